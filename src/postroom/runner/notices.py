"""The notices a message owes its sender: RFC 3464 bounces, delay warnings, and the
postmaster's copy of a bounce that cannot be returned."""

from __future__ import annotations

from postroom import maillog
from postroom.envelope import Envelope
from postroom.queue import accept, dsn
from postroom.runtime import Runtime


def postmaster_of(rt: Runtime) -> str:
    p = rt.site.profile
    pm = p.site.postmaster
    return pm if "@" in pm else f"{pm}@{p.site.domains[0]}"


def owed(env: Envelope) -> list[dsn.Notice]:
    """Final DSNs owed now: deliveries that became final and whose notice is not sent."""
    notices = []
    for r in env.recipients:
        for d in r.deliveries:
            if d.final and not d.dsn_sent:
                action = dsn.final_action(d)
                if dsn.wants(r, action):
                    notices.append(dsn.Notice(r, d, action))
    return notices


def build(rt: Runtime, env: Envelope, notices: list[dsn.Notice], message: bytes, *,
          now: float) -> tuple[Envelope, bytes] | None:
    """The notice as a new message (its envelope and body), or None when there is nobody
    to send it to (logged). A notice to a sender with no deliverable route goes to the
    postmaster instead, never to the void; a double bounce that cannot reach the
    postmaster is the one thing discarded, and the log says so."""
    p = rt.site.profile
    q = p.queue
    postmaster = postmaster_of(rt)
    if env.sender:
        to, kind = env.sender, "dsn"
    elif env.kind == "double-bounce":
        maillog.line(f"{env.id}: double bounce undeliverable, discarded "
                     f"({len(notices)} recipients)")
        return None
    else:
        notices = [n for n in notices if n.action == dsn.FAILED]
        if not notices:
            return None
        to, kind = postmaster, "double-bounce"
    routes = rt.resolver.resolve(to).routes
    recipient = accept.make_recipient(to, routes)
    if not recipient.deliveries and to != postmaster:
        maillog.line(f"{env.id}: DSN to <{to}> has no deliverable route "
                     f"({routes[0].text if routes else 'no route'}); sent to the postmaster")
        failed = [n for n in notices if n.action == dsn.FAILED]
        if not failed:
            return None  # a delay or success notice is for the sender alone
        notices, to, kind = failed, postmaster, "double-bounce"
        recipient = accept.make_recipient(to, rt.resolver.resolve(to).routes)
    if not recipient.deliveries:
        maillog.line(f"{env.id}: DSN to <{to}> has no deliverable route; discarded")
        return None
    body = dsn.build(env, notices, message, hostname=p.site.hostname,
                     postmaster=postmaster, now=now, lifetime=q.lifetime, to=to)
    notice_env = accept.new_envelope("", [recipient], protocol="local", kind=kind,
                                     client_addr="", helo=p.site.hostname)
    notice_env.arrival = now
    return notice_env, body
