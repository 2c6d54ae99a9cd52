"""Held posts: a post the rules held waits here for a moderator. Its bytes are a file in
``SITE/lists/held/`` (written durably before the row that names it), the row records who
sent it, which rule held it and why. A moderator approves (the post then goes on as if
the rules had let it through), rejects (the sender is told why) or discards it; held
posts older than the list's ``held_expiry_days`` are discarded by ``expire``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from postroom import safeio
from postroom.lists.model import ListSettings
from postroom.lists.store import list_id_of, with_connection
from postroom.site import Site
from postroom.store import StoreValueError
from postroom.store.models import HeldMessage, MailingList


@dataclass(frozen=True, slots=True)
class Held:
    id: int
    list_address: str
    sender: str
    subject: str
    message_id: str
    received: datetime
    reason: str
    rule: str
    file_name: str


def held_dir(site: Site) -> Path:
    return site.home / "lists" / "held"


def hold(site: Site, settings: ListSettings, raw: bytes, *, sender: str, subject: str,
         message_id: str, reason: str, rule: str) -> int:
    """Keep a post for the moderators; returns its held ID."""
    directory = held_dir(site)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(12)}.msg"
    safeio.publish(directory / f".{name}.tmp", directory / name, raw)

    def work(conn: Connection) -> int:
        list_id = list_id_of(conn, settings.name, settings.domain)
        result = conn.execute(insert(HeldMessage).values(
            list_id=list_id, sender=sender[:320], subject=subject[:998],
            message_id=message_id[:255], reason=reason, rule=rule[:64], file_name=name))
        conn.commit()
        key = result.inserted_primary_key
        return int(key[0]) if key else 0

    return int(with_connection(site, work))


def _select() -> Any:
    return (select(HeldMessage.id, MailingList.name, MailingList.domain, HeldMessage.sender,
                   HeldMessage.subject, HeldMessage.message_id, HeldMessage.received,
                   HeldMessage.reason, HeldMessage.rule, HeldMessage.file_name)
            .join(MailingList, MailingList.id == HeldMessage.list_id))


def _held(row: Any) -> Held:
    r = tuple(row)
    received = r[6] if r[6].tzinfo else r[6].replace(tzinfo=UTC)
    return Held(r[0], f"{r[1]}@{r[2]}", r[3], r[4], r[5], received, r[7], r[8], r[9])


def held_posts(site: Site, list_address: str | None = None) -> list[Held]:
    query = _select().order_by(HeldMessage.id)
    if list_address is not None:
        name, _, domain = list_address.lower().partition("@")
        query = query.where(MailingList.name == name, MailingList.domain == domain)
    return [_held(r) for r in with_connection(site, lambda c: c.execute(query).all())]


def get(site: Site, held_id: int) -> tuple[Held, bytes]:
    query = _select().where(HeldMessage.id == held_id)
    row = with_connection(site, lambda c: c.execute(query).first())
    if row is None:
        raise StoreValueError(f"no held post {held_id} (see postroom held list)")
    held = _held(row)
    return held, (held_dir(site) / held.file_name).read_bytes()


def forget(site: Site, held: Held) -> None:
    """The decision is made: remove the row, then the file."""
    def work(conn: Connection) -> None:
        conn.execute(delete(HeldMessage).where(HeldMessage.id == held.id))
        conn.commit()

    with_connection(site, work)
    (held_dir(site) / held.file_name).unlink(missing_ok=True)


def expired(site: Site, settings_of: dict[str, ListSettings], now: datetime) -> list[Held]:
    """Held posts older than their list's ``held_expiry_days``."""
    out = []
    for h in held_posts(site):
        s = settings_of.get(h.list_address)
        days = s.held_expiry_days if s is not None else 14
        if now - h.received > timedelta(days=days):
            out.append(h)
    return out
