"""Bounces to ``LIST-bounces``: the member a bounce names gets a bounce score. A VERP
address (``LIST-bounces+user=domain@``) names the member exactly; any other bounce is
read with flufl.bounce (DSNs and the many non-standard formats). A score decays: a
bounce more than DECAY_DAYS after the last starts again from zero. At THRESHOLD the
member's delivery is turned off, the log says so (``members list`` shows the score), the
member is sent a notice with a confirmation address that turns delivery on again (kind
``reenable``, handled by ``subscribe.confirm``), and the owners are told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes

from flufl.bounce import scan_message
from sqlalchemy import case, or_, select, update
from sqlalchemy.engine import Connection

from postroom import maillog
from postroom.envelope import Envelope
from postroom.lists import store, tokens
from postroom.lists.model import ListSettings
from postroom.lists.notices import Mail, notice
from postroom.runtime import build
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


def register(site: Site, target: store.ListTarget, envelope: Envelope,
             raw: bytes) -> list[Mail]:
    """Score the members a bounce names; the notices owed for those now disabled."""
    s = target.settings
    now = datetime.now(UTC)
    mails: list[Mail] = []
    for address in sorted(bounced_members(target, raw)):
        def work(conn: Connection, address: str = address) -> tuple[float, bool] | None:
            # one UPDATE decides the new score, so bounces taken at the same moment by
            # two processes both count; only the one that turns delivery off says so
            list_id = store.list_id_of(conn, s.name, s.domain)
            this = (ListMember.list_id == list_id, ListMember.address == address)
            fresh = or_(ListMember.last_bounce.is_(None),
                        ListMember.last_bounce < now - timedelta(days=DECAY_DAYS))
            done = conn.execute(update(ListMember).where(*this).values(
                bounce_score=case((fresh, 1.0), else_=ListMember.bounce_score + 1.0),
                last_bounce=now))
            if not done.rowcount:
                conn.rollback()
                return None
            score = float(conn.scalar(select(ListMember.bounce_score).where(*this)) or 0)
            disable = score >= THRESHOLD and bool(conn.execute(
                update(ListMember).where(*this, ListMember.delivery_enabled.is_(True))
                .values(delivery_enabled=False)).rowcount)
            conn.commit()
            return score, disable

        result = store.with_connection(site, work)
        if result is None:
            maillog.line(f"list {s.address}: bounce for <{address}>, not a member")
            continue
        score, disabled = result
        maillog.line(f"list {s.address}: bounce for <{address}>, score {score:g}"
                     + ("; delivery disabled" if disabled else ""))
        if disabled:
            mails += disabled_notices(site, target, address, score)
    return mails


def disabled_notices(site: Site, target: store.ListTarget, address: str,
                     score: float) -> list[Mail]:
    """The member's notice (with the address that turns delivery on again) and the
    owners'. The member's may bounce too; it is sent all the same, as Mailman does: a
    mailbox that was full may take it a day later."""
    from postroom.lists.subscribe import REENABLE, pending_request

    rt = build(site.home)
    s = target.settings
    token = pending_request(rt, target, REENABLE, address)
    if token is None:
        return []
    again = f"{s.name}-confirm+{token}@{s.domain}"
    out = []
    made = notice(s, rt, to=address, reply_to=again,
                  subject=f"Your delivery from {s.address} is turned off",
                  text=(f"Mail from {s.address} to {address} has bounced {score:g} times, so "
                        f"the list has stopped sending to it.\n\nTo get the list's mail "
                        f"again, reply to this message, or send any message to\n  {again}\n"))
    if made is not None:
        out.append(made)
    roles = store.roles(site, s.address)
    for owner in roles.owners if roles else ():
        made = notice(s, rt, to=owner, subject=f"{s.address}: delivery to {address} turned off",
                      text=(f"{address} bounced {score:g} times within {DECAY_DAYS} days of "
                            f"each other; delivery to it is off. It comes back on when the "
                            f"member confirms, or with:\n  postroom members enable "
                            f"{s.address} {address}\n"))
        if made is not None:
            out.append(made)
    return out


def reenable(site: Site, s: ListSettings, address: str) -> bool:
    """Turn delivery on again for a member and clear its bounce score; False when the
    address is not a member."""
    def work(conn: Connection) -> int:
        list_id = store.list_id_of(conn, s.name, s.domain)
        n = conn.execute(update(ListMember).where(ListMember.list_id == list_id,
                                                  ListMember.address == address.lower())
                         .values(delivery_enabled=True, bounce_score=0.0, last_bounce=None)
                         ).rowcount
        conn.commit()
        return int(n or 0)

    return bool(store.with_connection(site, work))
