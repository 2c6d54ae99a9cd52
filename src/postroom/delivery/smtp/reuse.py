"""Connection reuse (Postfix's smtp_reuse.c): idle sessions kept per destination.

A session is kept for the next Job to the same destination (same route host, port and
policy) for ``idle_timeout`` seconds, at most ``max_idle`` per destination and never past
``max_age`` seconds since it opened. While it is idle a watcher reads from it: a server
that hangs up (or speaks unasked, e.g. a 421) ends the session there and then, so it is
never handed out dead. ``aclose`` QUITs them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from postroom.delivery.smtp.policy import Policy
from postroom.delivery.smtp.session import Session

Key = tuple[str, int, Policy]


class SessionCache:
    def __init__(self, *, idle_timeout: float, max_idle: int, max_age: float,
                 quit_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self.max_age = max_age
        self.quit_timeout = quit_timeout
        self._idle: dict[Key, list[Session]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def take(self, key: Key) -> Session | None:
        idle = self._idle.get(key)
        while idle:
            session = idle.pop()
            if session.idle_timer is not None:
                session.idle_timer.cancel()
                session.idle_timer = None
            await _unwatch(session)
            if session.alive and time.monotonic() - session.opened < self.max_age:
                return session
            self._close_later(session)
        return None

    async def put(self, key: Key, session: Session) -> None:
        idle = self._idle.setdefault(key, [])
        if (self.idle_timeout <= 0 or len(idle) >= self.max_idle or session.replies.pending
                or time.monotonic() - session.opened >= self.max_age):
            await self.close(session)
            return
        loop = asyncio.get_running_loop()
        session.idle_timer = loop.call_later(self.idle_timeout, self._expire, key, session)
        session.watcher = loop.create_task(_watch(session))
        session.watcher.add_done_callback(
            lambda task: None if task.cancelled() else self._expire(key, session))
        idle.append(session)

    async def close(self, session: Session) -> None:
        await _unwatch(session)
        await session.quit(self.quit_timeout)

    async def aclose(self) -> None:
        sessions = [s for idle in self._idle.values() for s in idle]
        self._idle.clear()
        for s in sessions:
            if s.idle_timer is not None:
                s.idle_timer.cancel()
        await asyncio.gather(*(self.close(s) for s in sessions), *self._closing)

    def _expire(self, key: Key, session: Session) -> None:
        idle = self._idle.get(key, [])
        if session in idle:
            idle.remove(session)
            if session.idle_timer is not None:
                session.idle_timer.cancel()
                session.idle_timer = None
            self._close_later(session)

    def _close_later(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self.close(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _watch(session: Session) -> None:
    """Wait for the idle server to say anything (or hang up); then the session is over.
    (A session put here has read nothing ahead: ``SessionCache.put``.)"""
    with contextlib.suppress(OSError):
        await session.reader.read(1)
    session.close()


async def _unwatch(session: Session) -> None:
    watcher, session.watcher = session.watcher, None
    if watcher is not None and not watcher.done():
        watcher.cancel()
        await asyncio.wait({watcher})  # its CancelledError stays in it; ours would not
