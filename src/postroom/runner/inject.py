"""``inject``: the one way besides SMTP intake to put a new message in the queue.

DSNs and delay warnings, ``postroom-sendmail``, ``queue import``, list fan-out and list
notices all come through here. Inside a server process the message goes to that
process's runner: durable, its claim reserved before it is visible, and its first attempt
started at once from memory. From a command, it is written with a spool of the command's
own and the running server is told over the control channel, so its first attempt is at
once there too (with no server running, ``serve`` finds it when it starts).
"""

from __future__ import annotations

from postroom import control
from postroom.envelope import Envelope
from postroom.queue.spool import Spool
from postroom.runner.runner import QueueRunner
from postroom.site import Site, SiteHome


async def inject(envelope: Envelope, message: bytes, *, runner: QueueRunner | None = None,
                 site: Site | None = None, spool: Spool | None = None,
                 held: bool = False) -> str:
    """Queue ``message``; returns its queue ID once it is durable. Pass the ``runner`` of
    this process when there is one, else the ``site`` (and the command's ``spool`` if it
    has one open). ``held``: into ``hold/`` (for a command only), not delivered until
    released."""
    if runner is not None:
        if held:
            raise ValueError("a server injects deliverable mail only")
        return await runner.inject(envelope, message)
    if site is None:
        raise ValueError("inject needs the runner of this process or the site")
    return inject_from_command(envelope, message, site=site, spool=spool, held=held)


def inject_from_command(envelope: Envelope, message: bytes, *, site: SiteHome,
                        spool: Spool | None = None, held: bool = False) -> str:
    """``inject`` for a command without an event loop (``queue import``)."""
    if spool is None:
        with Spool(site.queue_dir) as own:
            qid = own.put_sync(envelope, message, held=held)
    else:
        qid = spool.put_sync(envelope, message, held=held)
    if not held:
        control.tell(site.state_dir, "new", qid)
    return qid
