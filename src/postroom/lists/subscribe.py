"""Subscriptions by mail: ``LIST-join@`` and ``LIST-leave@`` (or ``subscribe`` /
``unsubscribe`` to ``LIST-request@``) start a request; the address asked for gets a
confirmation with a token, and replying to ``LIST-confirm+TOKEN@`` (or sending ``confirm
TOKEN`` to ``-request``) carries it out. Confirmation is always asked of the address
itself, so nobody can subscribe someone else. Tokens are HMACs of the list's secret, kept
in ``pending_confirmations`` until used or expired (CONFIRM_DAYS).

A list with ``subscription_needs_approval`` asks its owners once the address is confirmed
(kind ``approve``: only a reply from an owner counts). A member whose delivery bounce
processing turned off confirms kind ``reenable`` to get the list's mail again. At most
MAX_REQUESTS_A_DAY confirmation mails go to one address for one list in a day: the rest
are logged, not sent, so the list cannot be used to flood someone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from postroom import maillog
from postroom.lists import store, tokens
from postroom.lists.model import ListSettings, Member
from postroom.lists.notices import Mail, notice
from postroom.runtime import Runtime, build
from postroom.site import Site
from postroom.store import StoreError
from postroom.store.models import PendingConfirmation

CONFIRM_DAYS = 3
MAX_REQUESTS_A_DAY = 3
SUBSCRIBE, UNSUBSCRIBE, APPROVE, REENABLE = "subscribe", "unsubscribe", "approve", "reenable"
_CONFIRM = re.compile(r"\bconfirm\s+([0-9a-z.]+)", re.I)


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
        return confirm(rt, target, target.detail, sender=who)
    command = _command(msg).lower()
    if service == "join" or (service == "request" and command.startswith("subscribe")):
        return request(rt, target, SUBSCRIBE, who)
    if service == "leave" or (service == "request" and command.startswith("unsubscribe")):
        return request(rt, target, UNSUBSCRIBE, who)
    found = _CONFIRM.search(command)
    if service == "request" and found:
        return confirm(rt, target, found.group(1), sender=who)
    s = target.settings
    made = notice(s, rt, to=who, subject=f"Help for {s.address}", text=(
        f"{s.address}: {s.description or 'a mailing list'}\n\n"
        f"To subscribe, send any message to {s.service('join')}.\n"
        f"To unsubscribe, send any message to {s.service('leave')}.\n"
        f"To reach the owners, write to {s.service('owner')}.\n"))
    return [made] if made else []


def pending_request(rt: Runtime, target: store.ListTarget, kind: str,
                    address: str) -> str | None:
    """Record a request of ``kind`` for ``address``; its confirmation token, or None
    when the same request was recorded within the same second (the token would be the
    same: a client that sent its request twice gets one confirmation)."""
    s = target.settings
    now = datetime.now(UTC)
    token = tokens.confirm_token(target.secret.encode(), kind, address, now)

    def work(conn: Connection) -> bool:
        if conn.scalar(select(PendingConfirmation.id)
                       .where(PendingConfirmation.token == token)) is not None:
            return False
        list_id = store.list_id_of(conn, s.name, s.domain)
        conn.execute(insert(PendingConfirmation).values(
            token=token, list_id=list_id, kind=kind, address=address, created=now,
            expires=now + timedelta(days=CONFIRM_DAYS)))
        conn.commit()
        return True

    try:
        made = store.with_connection(rt.site, work)
    except StoreError:
        # another process recorded the same token between our look and our insert
        return None
    return token if made else None


def requests_today(rt: Runtime, s: ListSettings, address: str) -> int:
    """Confirmation requests made for ``address`` on this list in the last day."""
    since = datetime.now(UTC) - timedelta(days=1)

    def work(conn: Connection) -> int:
        list_id = store.list_id_of(conn, s.name, s.domain)
        return int(conn.scalar(select(func.count()).select_from(PendingConfirmation).where(
            PendingConfirmation.list_id == list_id, PendingConfirmation.address == address,
            PendingConfirmation.kind.in_((SUBSCRIBE, UNSUBSCRIBE)),
            PendingConfirmation.created >= since)) or 0)

    found: int = store.with_connection(rt.site, work)
    return found


def request(rt: Runtime, target: store.ListTarget, kind: str, address: str) -> list[Mail]:
    s = target.settings
    if requests_today(rt, s, address) >= MAX_REQUESTS_A_DAY:
        maillog.line(f"list {s.address}: {kind} request for <{address}> not confirmed by "
                     f"mail: {MAX_REQUESTS_A_DAY} requests already today")
        return []
    token = pending_request(rt, target, kind, address)
    if token is None:
        maillog.line(f"list {s.address}: {kind} request for <{address}> repeated; one "
                     "confirmation sent")
        return []
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


def confirm(rt: Runtime, target: store.ListTarget, token: str, *,
            sender: str = "") -> list[Mail]:
    s = target.settings
    now = datetime.now(UTC)
    token = token.strip().lower()

    def peek(conn: Connection) -> tuple[str, str] | None:
        row = conn.execute(select(PendingConfirmation.kind, PendingConfirmation.address)
                           .where(PendingConfirmation.token == token)).first()
        return None if row is None else (str(row[0]), str(row[1]))

    pending = store.with_connection(rt.site, peek)
    if pending is None or not tokens.verify_confirm_token(
            target.secret.encode(), token, pending[0], pending[1], now=now,
            max_age=CONFIRM_DAYS * 86400):
        maillog.line(f"list {s.address}: confirmation {token[:12]}... unknown or expired")
        return []
    kind, address = pending
    if kind == APPROVE and not _is_owner(rt, s, sender):
        maillog.line(f"list {s.address}: approval of <{address}> from <{sender}> ignored: "
                     "not an owner")
        return []

    def take(conn: Connection) -> None:
        conn.execute(delete(PendingConfirmation).where(PendingConfirmation.token == token))
        conn.commit()

    store.with_connection(rt.site, take)
    if kind == SUBSCRIBE and s.subscription_needs_approval:
        return _ask_owners(rt, target, address)
    if kind in (SUBSCRIBE, APPROVE):
        store.add_members(rt.site, s.name, s.domain, [Member(address)])
        subject, text = (f"Welcome to {s.address}",
                         f"You are now subscribed to {s.address}.\n"
                         f"To leave, send any message to {s.service('leave')}.\n")
        said = "subscribed" + (f" (approved by {sender})" if kind == APPROVE else
                               " (confirmed)")
    elif kind == REENABLE:
        from postroom.lists.bounces import reenable

        reenable(rt.site, s, address)
        subject, text = (f"Delivery from {s.address} is on again",
                         f"{address} gets the mail of {s.address} again.\n")
        said = "delivery turned on again (confirmed)"
    else:
        store.remove_members(rt.site, s.name, s.domain, [address])
        subject, text = (f"You have left {s.address}",
                         f"{address} is no longer subscribed to {s.address}.\n")
        said = "unsubscribed (confirmed)"
    maillog.line(f"list {s.address}: <{address}> {said}")
    made = notice(s, rt, to=address, subject=subject, text=text)
    return [made] if made else []


def _is_owner(rt: Runtime, s: ListSettings, sender: str) -> bool:
    roles = store.roles(rt.site, s.address)
    return roles is not None and sender.lower() in {o.lower() for o in roles.owners}


def _ask_owners(rt: Runtime, target: store.ListTarget, address: str) -> list[Mail]:
    """The address is confirmed; the list wants its owners' approval as well."""
    s = target.settings
    token = pending_request(rt, target, APPROVE, address)
    if token is None:
        return []
    approve_at = f"{s.name}-confirm+{token}@{s.domain}"
    roles = store.roles(rt.site, s.address)
    out = []
    for owner in roles.owners if roles else ():
        made = notice(s, rt, to=owner, reply_to=approve_at,
                      subject=f"{s.address}: subscription of {address} to approve",
                      text=(f"{address} asked to join {s.address} and confirmed the "
                            f"address.\n\nTo let them in, reply to this message, or send "
                            f"any message to\n  {approve_at}\n\nTo refuse, do nothing: "
                            f"the request expires in {CONFIRM_DAYS} days.\n"))
        if made is not None:
            out.append(made)
    made = notice(s, rt, to=address, subject=f"Your request to join {s.address}",
                  text=f"Thank you. The owners of {s.address} approve new members; you "
                       f"will hear from the list when they have.\n")
    if made is not None:
        out.append(made)
    maillog.line(f"list {s.address}: <{address}> confirmed, waits for the owners' approval")
    return out
