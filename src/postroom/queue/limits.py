"""Delivery concurrency limits for the whole server, not per process (and, with a limit of
one per message ID, the runner's claims on messages being delivered).

Every intake process delivers what it took in, and the master does the retries, so a
limit kept in one process's memory would let each of them open that many connections to
one destination. ``SharedLimits`` counts across processes with POSIX record locks on
bytes of one file (``queue/limits``): a key (a destination, or the global limit) owns a
run of 256 bytes, a holder locks one of the first ``limit`` of them, and the kernel frees
a dead process's locks. Record locks never conflict inside one process, so each process
also remembers which bytes it holds. Two keys that hash alike share their bytes, which
only makes their limit stricter.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

MAX_LIMIT = 256               # bytes per key: no limit above this is enforced more finely
_POLL_FIRST, _POLL_MAX = 0.002, 0.05


class SharedLimits:
    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._held: set[int] = set()

    @asynccontextmanager
    async def slot(self, key: str, limit: int) -> AsyncIterator[None]:
        """Hold one of ``limit`` slots of ``key`` (waiting for one) for the block."""
        offset = await self.acquire(key, limit)
        try:
            yield
        finally:
            self.release(offset)

    async def acquire(self, key: str, limit: int) -> int:
        base = slots_of(key)
        delay = _POLL_FIRST
        while True:
            offset = self.try_acquire(base, limit)
            if offset is not None:
                return offset
            await asyncio.sleep(delay)  # other processes hold them all: look again soon
            delay = min(delay * 2, _POLL_MAX)

    def try_acquire(self, base: int, limit: int) -> int | None:
        for offset in range(base, base + max(1, min(limit, MAX_LIMIT))):
            if offset in self._held:
                continue
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            except OSError:
                continue
            self._held.add(offset)
            return offset
        return None

    def release(self, offset: int) -> None:
        self._held.discard(offset)
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, offset)

    def close(self) -> None:
        os.close(self.fd)


def slots_of(key: str) -> int:
    """Where the bytes of ``key`` start in the file."""
    # 2^40 runs of 256 bytes: offsets stay below 2^48, far inside off_t
    bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=5).digest(), "big")
    return bucket * MAX_LIMIT
