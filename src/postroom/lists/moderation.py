"""Decisions on held posts, by command, by reply and by the clock.

A moderator's notice of a held post carries a token (``tokens.confirm_token`` of kind
``moderate`` for that held ID, kept in ``pending_confirmations`` like a subscription's)
in its Reply-To, ``LIST-confirm+TOKEN@``. A reply from a moderator or owner whose first
line (not quoted, else the Subject) is ``approve``, ``reject [reason]`` or ``discard``
decides; any other word gets a reply naming the three, and nothing is decided. A reply
from anyone else decides nothing (the token alone is not enough: notices get forwarded).

``expire`` discards held posts older than the list's ``held_expiry_days`` and tells their
senders; ``remind`` sends each list's moderators one summary of the posts still waiting.
Both run as one periodic task of ``serve`` (``[lists] held_check``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from postroom import maillog
from postroom.envelope import Envelope
from postroom.lists import held, store, tokens
from postroom.lists.model import ListSettings
from postroom.lists.notices import notice
from postroom.runtime import Runtime
from postroom.store.models import PendingConfirmation

MODERATE = "moderate"
Mail = tuple[Envelope, bytes]
_WORD = re.compile(r"^\s*(approve|reject|discard)\b\s*(.*)$", re.I)


def decider_token(rt: Runtime, target: store.ListTarget, held_id: int) -> str:
    """A new token for deciding ``held_id`` by reply (valid as long as the post is held)."""
    s = target.settings
    now = datetime.now(UTC)
    token = tokens.confirm_token(target.secret.encode(), MODERATE, str(held_id), now)

    def work(conn: Connection) -> None:
        list_id = store.list_id_of(conn, s.name, s.domain)
        conn.execute(insert(PendingConfirmation).values(
            token=token, list_id=list_id, kind=MODERATE, address=str(held_id), created=now,
            expires=now + timedelta(days=s.held_expiry_days + 1)))
        conn.commit()

    store.with_connection(rt.site, work)
    return token


def held_for_token(rt: Runtime, target: store.ListTarget, token: str) -> int | None:
    """The held ID a moderation token decides; None when it is no such token (then it
    is a subscription's, or unknown)."""
    token = token.strip().lower()
    row = store.with_connection(rt.site, lambda c: c.execute(
        select(PendingConfirmation.address).where(PendingConfirmation.token == token,
                                                  PendingConfirmation.kind == MODERATE)
    ).first())
    if row is None:
        return None
    days = target.settings.held_expiry_days + 1
    if not tokens.verify_confirm_token(target.secret.encode(), token, MODERATE, str(row[0]),
                                       now=datetime.now(UTC), max_age=days * 86400):
        return None
    return int(row[0])


def forget_tokens(rt: Runtime, held_id: int) -> None:
    def work(conn: Connection) -> None:
        conn.execute(delete(PendingConfirmation).where(
            PendingConfirmation.kind == MODERATE, PendingConfirmation.address == str(held_id)))
        conn.commit()

    store.with_connection(rt.site, work)


def reply_command(raw: bytes) -> tuple[str, str]:
    """(word, rest) of a moderator's reply: the first line that is not quoted, else the
    Subject (``Re:`` stripped); ``("", "")`` when neither holds a known word."""
    msg = message_from_bytes(raw)
    for line in _first_text(msg).splitlines():
        if not line.strip() or line.lstrip().startswith(">"):
            continue
        found = _WORD.match(line)
        return (found.group(1).lower(), found.group(2).strip()) if found else ("", "")
    subject = re.sub(r"^\s*(re|aw|sv):\s*", "", str(msg.get("Subject") or ""), flags=re.I)
    found = _WORD.match(subject)
    return (found.group(1).lower(), found.group(2).strip()) if found else ("", "")


def _first_text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def may_decide(rt: Runtime, s: ListSettings, sender: str) -> bool:
    roles = store.roles(rt.site, s.address)
    if roles is None:
        return False
    return sender.lower() in {a.lower() for a in (*roles.moderators, *roles.owners)}


def rejection(rt: Runtime, s: ListSettings, h: held.Held, reason: str) -> Mail | None:
    """The notice telling a held post's sender that it was rejected."""
    if not h.sender:
        return None
    return notice(s, rt, to=h.sender, subject=f"Your post to {s.address} was rejected",
                  text=f"Your message to {s.address} ({h.subject}) was not sent to the "
                       f"list: {reason or 'rejected by the moderator'}.\n")


def refuse(rt: Runtime, held_id: int, *, reason: str, tell: bool) -> list[Mail]:
    """Reject (``tell``: the sender is told ``reason``) or discard a held post."""
    h, _ = held.get(rt.site, held_id)
    s = store.settings_for(rt.site, h.list_address)
    out = []
    if tell and s is not None:
        made = rejection(rt, s, h, reason)
        if made is not None:
            out.append(made)
    held.forget(rt.site, h)
    forget_tokens(rt, held_id)
    maillog.line(f"list {h.list_address}: held post {held_id} from <{h.sender}> "
                 + (f"rejected: {reason or 'by the moderator'}" if tell else "discarded"))
    return out


def expire(rt: Runtime, now: datetime | None = None) -> tuple[int, list[Mail]]:
    """Discard every held post past its list's expiry; the senders are told."""
    now = now or datetime.now(UTC)
    settings_of = {}
    for h in held.held_posts(rt.site):
        if h.list_address not in settings_of:
            s = store.settings_for(rt.site, h.list_address)
            if s is not None:
                settings_of[h.list_address] = s
    mails: list[Mail] = []
    gone = held.expired(rt.site, settings_of, now)
    for h in gone:
        days = settings_of[h.list_address].held_expiry_days if h.list_address in \
            settings_of else 14
        mails += refuse(rt, h.id, tell=True,
                        reason=f"no moderator decided on it within {days} days")
    return len(gone), mails


def remind(rt: Runtime) -> list[Mail]:
    """One summary per list with held posts, to its moderators and owners."""
    by_list: dict[str, list[held.Held]] = {}
    for h in held.held_posts(rt.site):
        by_list.setdefault(h.list_address, []).append(h)
    mails: list[Mail] = []
    for address, posts in sorted(by_list.items()):
        s = store.settings_for(rt.site, address)
        roles = store.roles(rt.site, address)
        if s is None or roles is None:
            continue
        lines = [f"{len(posts)} post(s) to {address} wait for a moderator:", ""]
        for h in posts:
            lines.append(f"  {h.id:>5}  {h.received:%Y-%m-%d %H:%M}  {h.sender}  "
                         f"{h.subject}  ({h.reason})")
        lines += ["", "Decide with:  postroom held approve|reject|discard ID",
                  f"Posts not decided within {s.held_expiry_days} days are discarded."]
        for to in sorted({*roles.moderators, *roles.owners}):
            made = notice(s, rt, to=to, subject=f"{address}: {len(posts)} held post(s) "
                                                "waiting", text="\n".join(lines) + "\n")
            if made is not None:
                mails.append(made)
    return mails
