"""The queue actions of the API, with the spool calls ``postroom queue`` makes: hold and
release move the envelope (``Spool.hold`` / ``release``), flush makes every deferred
delivery due (``Spool.modify``) and tells the running server over the control channel."""

from __future__ import annotations

from typing import Any

from postroom import control
from postroom.envelope import Envelope
from postroom.errors import PostroomError
from postroom.queue.schedule import due_now
from postroom.queue.spool import Spool, UnknownMessage
from postroom.site import Site

LIST_MAX = 1000


def item(spool: Spool, qid: str, env: Envelope) -> dict[str, Any]:
    return {"id": qid, "sender": env.sender, "arrival": env.arrival, "size": env.size,
            "held": spool.is_held(qid), "kind": env.kind,
            "recipients": [{"address": r.address, "deliveries": [
                {"mailer": d.mailer, "host": d.host, "user": d.user,
                 "state": d.state.value, "tries": d.tries, "next_attempt": d.next_attempt,
                 "last_error": d.last_error} for d in r.deliveries]}
                for r in env.recipients]}


def listing(site: Site, limit: int = LIST_MAX) -> list[dict[str, Any]]:
    out = []
    with Spool(site.queue_dir) as spool:
        for qid in spool.ids()[:limit]:
            try:
                out.append(item(spool, qid, spool.load(qid)))
            except PostroomError:
                continue
    return out


def show(site: Site, qid: str) -> dict[str, Any]:
    with Spool(site.queue_dir) as spool:
        return item(spool, qid, spool.load(qid))


def hold(site: Site, qid: str) -> None:
    with Spool(site.queue_dir) as spool:
        spool.hold(qid)


def release(site: Site, qid: str) -> None:
    with Spool(site.queue_dir) as spool:
        spool.release(qid)
    control.tell(site.state_dir, "flush", qid)


def flush(site: Site, qid: str | None = None) -> dict[str, Any]:
    changed = 0

    def now(envelope: Envelope) -> bool:
        nonlocal changed
        moved = due_now(envelope)
        changed += moved
        return moved

    with Spool(site.queue_dir) as spool:
        for one in ([qid] if qid else spool.ids(include_held=False)):
            try:
                spool.modify(one, now)
            except UnknownMessage:
                if qid:
                    raise
    told = control.tell(site.state_dir, "flush", *([qid] if qid else []))
    return {"rescheduled": changed, "server_told": told}
