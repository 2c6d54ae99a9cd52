"""Bounces to ``LIST-bounces``: the member a bounce names gets a bounce score. A VERP
address (``LIST-bounces+user=domain@``) names the member exactly; any other bounce is
read with flufl.bounce (DSNs and the many non-standard formats). A score decays: a
bounce more than DECAY_DAYS after the last starts again from zero. At THRESHOLD the
member's delivery is turned off and the log says so (``members list`` shows the score)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes

from flufl.bounce import scan_message
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from postroom import maillog
from postroom.envelope import Envelope
from postroom.lists import store, tokens
from postroom.site import Site
from postroom.store.models import ListMember

THRESHOLD = 5.0
DECAY_DAYS = 7


def bounced_members(target: store.ListTarget, raw: bytes) -> set[str]:
    s = target.settings
    if target.detail:
        found = tokens.verp_member(f"{s.name}-bounces+{target.detail}@{s.domain}",
                                   s.name, s.domain)
        if found:
            return {found.lower()}
    return {a.decode("utf-8", "replace").lower() if isinstance(a, bytes) else str(a).lower()
            for a in scan_message(message_from_bytes(raw))}


def register(site: Site, target: store.ListTarget, envelope: Envelope, raw: bytes) -> None:
    s = target.settings
    now = datetime.now(UTC)
    for address in sorted(bounced_members(target, raw)):
        def work(conn: Connection, address: str = address) -> tuple[float, bool] | None:
            list_id = store.list_id_of(conn, s.name, s.domain)
            row = conn.execute(select(ListMember.bounce_score, ListMember.last_bounce)
                               .where(ListMember.list_id == list_id,
                                      ListMember.address == address)).first()
            if row is None:
                return None
            score, last = float(row[0]), row[1]
            if last is not None and last.tzinfo is None:
                last = last.replace(tzinfo=UTC)
            if last is None or now - last > timedelta(days=DECAY_DAYS):
                score = 0.0
            score += 1.0
            disable = score >= THRESHOLD
            values: dict[str, object] = {"bounce_score": score, "last_bounce": now}
            if disable:
                values["delivery_enabled"] = False
            conn.execute(update(ListMember).where(ListMember.list_id == list_id,
                                                  ListMember.address == address)
                         .values(**values))
            conn.commit()
            return score, disable

        result = store.with_connection(site, work)
        if result is None:
            maillog.line(f"list {s.address}: bounce for <{address}>, not a member")
            continue
        score, disabled = result
        maillog.line(f"list {s.address}: bounce for <{address}>, score {score:g}"
                     + ("; delivery disabled" if disabled else ""))
