"""``inject``: the one way besides SMTP intake to put a new message in the queue.

DSNs and delay warnings, ``postroom-sendmail``, ``queue import``, list fan-out and list
notices all come through here. Inside a server process the message goes to that
process's runner: durable, its claim reserved before it is visible, and its first attempt
started at once from memory. From a command, it is written with a spool of the command's
own and the running server is told over the control channel, so its first attempt is at
once there too (with no server running, ``serve`` finds it when it starts).
"""

from __future__ import annotations

import asyncio
import collections
import time

from postroom import control
from postroom.envelope import Envelope
from postroom.queue.spool import Spool
from postroom.runner.runner import QueueRunner
from postroom.site import Site, SiteHome

# messages of one paced batch (the fan-out of one list post) in their first round at once
PACED_WINDOW = 4
# ... counted for at most this many seconds: a round that waits for a slow destination
# (a connection timing out) must not hold the rest of the fan-out back
PACED_PATIENCE = 5.0
_HANDING_OVER: set[asyncio.Task[None]] = set()  # the loop keeps only weak references


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


class Paced:
    """Many messages queued at once (the fan-out of a list post to 100,000 members, as
    100 messages), started a few at a time.

    ``put`` makes each message durable (its claim reserved, as ``inject`` does) and
    forgets it; a task hands them to the runner in order, so that at most ``window`` of
    them are in their first round at once; each is read back from the spool when its
    turn comes, by this process's runner, which holds its claim throughout. So a fan-out
    of any size holds ``window`` envelopes in memory, not all of them, and the caller
    (the list engine, whose post is taken once every message is durable) does not wait
    for the deliveries. The claims keep the master's scans off the messages waiting their
    turn; if this process dies the kernel frees them and the master takes the rest over
    at once, as for any message of a dead process.

    A message counts against the window until its first round ends, or for
    ``patience`` seconds: a round that waits for one slow destination of its thousand
    members lets the next message start meanwhile (memory is then bounded by time, not
    by count)."""

    def __init__(self, runner: QueueRunner, window: int = PACED_WINDOW,
                 patience: float = PACED_PATIENCE) -> None:
        self.runner = runner
        self.window = max(1, window)
        self.patience = patience
        self._waiting: collections.deque[str] = collections.deque()
        self._started: dict[str, float] = {}  # handed over: when (monotonic)
        self._task: asyncio.Task[None] | None = None

    async def put(self, envelope: Envelope, message: bytes) -> str:
        """Queue ``message`` durably; its first attempt comes in its turn."""
        if len(self._waiting) + len(self._busy()) < self.window:
            return await self._started_now(envelope, message)
        qid, _ = await self.runner.put_claimed(envelope, message)
        self._waiting.append(qid)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._hand_over())
            _HANDING_OVER.add(self._task)
            self._task.add_done_callback(_HANDING_OVER.discard)
        return qid

    async def _started_now(self, envelope: Envelope, message: bytes) -> str:
        qid = await self.runner.inject(envelope, message)  # delivered from memory
        self._started[qid] = time.monotonic()
        return qid

    def _busy(self) -> dict[str, float]:
        """The messages handed over whose first round in this process has not ended
        (nor lasted longer than ``patience``)."""
        r = self.runner
        since = time.monotonic() - self.patience
        self._started = {q: t for q, t in self._started.items() if t > since and (
            q in r.preloaded or q in r.fresh or q in r.inflight)}
        return self._started

    async def _hand_over(self) -> None:
        r = self.runner
        while self._waiting and not r._stop:  # stopping: the claims go with the process
            if len(self._busy()) >= self.window:
                await asyncio.sleep(0.01)
                continue
            qid = self._waiting.popleft()
            # handed over with its claim still held (no other process can slip in
            # between): the round takes it as its own and releases it at its end
            r.claims.reserved.discard(qid)
            self._started[qid] = time.monotonic()
            r.notify(qid)
