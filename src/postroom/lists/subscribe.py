"""Subscriptions by mail: ``LIST-join@`` and ``LIST-leave@`` (or ``subscribe`` /
``unsubscribe`` to ``LIST-request@``) start a request; the address asked for gets a
confirmation with a token, and replying to ``LIST-confirm+TOKEN@`` (or sending ``confirm
TOKEN`` to ``-request``) carries it out. Confirmation is always asked of the address
itself, so nobody can subscribe someone else. Tokens are HMACs of the list's secret, kept
in ``pending_confirmations`` until used or expired (CONFIRM_DAYS)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from postroom import maillog
from postroom.envelope import Envelope
from postroom.lists import store, tokens
from postroom.lists.model import Member
from postroom.lists.notices import notice
from postroom.runtime import Runtime, build
from postroom.site import Site
from postroom.store.models import PendingConfirmation

CONFIRM_DAYS = 3
SUBSCRIBE, UNSUBSCRIBE = "subscribe", "unsubscribe"
_CONFIRM = re.compile(r"\bconfirm\s+([0-9a-z.]+)", re.I)
Mail = tuple[Envelope, bytes]


def _command(msg: Message) -> str:
    """The first word of the Subject, else of the first body line (Mailman's way)."""
    subject = str(msg.get("Subject") or "").strip()
    if subject.lower().startswith("re:"):
        subject = subject[3:].strip()
    if subject:
        return subject
    body = msg.get_payload(decode=True) if not msg.is_multipart() else b""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else ""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def handle(site: Site, target: store.ListTarget, sender: str, raw: bytes) -> list[Mail]:
    """What a mail to a subscription address asks; the notices to send."""
    rt = build(site.home)
    msg = message_from_bytes(raw)
    service, who = target.service, sender.lower()
    if not who:
        return []  # a bounce to a request address: nothing to answer
    if service == "confirm":
        return confirm(rt, target, target.detail)
    command = _command(msg).lower()
    if service == "join" or (service == "request" and command.startswith("subscribe")):
        return request(rt, target, SUBSCRIBE, who)
    if service == "leave" or (service == "request" and command.startswith("unsubscribe")):
        return request(rt, target, UNSUBSCRIBE, who)
    found = _CONFIRM.search(command)
    if service == "request" and found:
        return confirm(rt, target, found.group(1))
    s = target.settings
    made = notice(s, rt, to=who, subject=f"Help for {s.address}", text=(
        f"{s.address}: {s.description or 'a mailing list'}\n\n"
        f"To subscribe, send any message to {s.service('join')}.\n"
        f"To unsubscribe, send any message to {s.service('leave')}.\n"
        f"To reach the owners, write to {s.service('owner')}.\n"))
    return [made] if made else []


def request(rt: Runtime, target: store.ListTarget, kind: str, address: str) -> list[Mail]:
    s = target.settings
    now = datetime.now(UTC)
    token = tokens.confirm_token(target.secret.encode(), kind, address, now)

    def work(conn: Connection) -> None:
        list_id = store.list_id_of(conn, s.name, s.domain)
        conn.execute(insert(PendingConfirmation).values(
            token=token, list_id=list_id, kind=kind, address=address, created=now,
            expires=now + timedelta(days=CONFIRM_DAYS)))
        conn.commit()

    store.with_connection(rt.site, work)
    confirm_at = f"{s.name}-confirm+{token}@{s.domain}"
    maillog.line(f"list {s.address}: {kind} request for <{address}>, confirmation sent")
    made = notice(s, rt, to=address, reply_to=confirm_at,
                  subject=f"confirm {token}",
                  text=(f"Someone (perhaps you) asked to {kind} {address} "
                        f"{'to' if kind == SUBSCRIBE else 'from'} {s.address}.\n\n"
                        f"To confirm, reply to this message, or send any message to\n"
                        f"  {confirm_at}\n\nIf you did not ask, ignore this message; "
                        f"the request expires in {CONFIRM_DAYS} days.\n"))
    return [made] if made else []


def confirm(rt: Runtime, target: store.ListTarget, token: str) -> list[Mail]:
    s = target.settings
    now = datetime.now(UTC)
    token = token.strip().lower()

    def take(conn: Connection) -> tuple[str, str] | None:
        row = conn.execute(select(PendingConfirmation.kind, PendingConfirmation.address)
                           .where(PendingConfirmation.token == token)).first()
        if row is None:
            return None
        conn.execute(delete(PendingConfirmation).where(PendingConfirmation.token == token))
        conn.commit()
        return str(row[0]), str(row[1])

    pending = store.with_connection(rt.site, take)
    if pending is None or not tokens.verify_confirm_token(
            target.secret.encode(), token, pending[0], pending[1], now=now,
            max_age=CONFIRM_DAYS * 86400):
        maillog.line(f"list {s.address}: confirmation {token[:12]}... unknown or expired")
        return []
    kind, address = pending
    if kind == SUBSCRIBE:
        store.add_members(rt.site, s.name, s.domain, [Member(address)])
        subject, text = (f"Welcome to {s.address}",
                         f"You are now subscribed to {s.address}.\n"
                         f"To leave, send any message to {s.service('leave')}.\n")
    else:
        store.remove_members(rt.site, s.name, s.domain, [address])
        subject, text = (f"You have left {s.address}",
                         f"{address} is no longer subscribed to {s.address}.\n")
    maillog.line(f"list {s.address}: <{address}> {kind}d (confirmed)")
    made = notice(s, rt, to=address, subject=subject, text=text)
    return [made] if made else []
