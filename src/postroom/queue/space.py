"""Free space on the queue's file system: intake refuses new mail before the disk is full
(Postfix's ``queue_minfree``), so that what is already queued keeps room for its envelope
updates and the bounces it may owe.

``FreeSpace.shortage`` answers from a ``statvfs`` at most ``max_age`` (1 s) old, so asking
for every MAIL and DATA costs a clock read. The space counted is what an unprivileged
process may use (``f_bavail``): root's reserve is not counted on, even though the server
may run as root and write into it.

When the disk fills anyway (a burst between two looks, another program, a smaller reserve
than one message), the spool's writes fail with ENOSPC, ``put`` undoes what it wrote and
raises ``QueueError``, and intake answers ``452 4.3.1``; nothing already queued is touched
(see ``postroom.queue.commit``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FreeSpace:
    path: str
    max_age: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _free: int = field(default=-1, init=False)
    _seen: float = field(default=float("-inf"), init=False)

    def free(self) -> int:
        """Bytes free for an unprivileged writer (-1 if statvfs fails)."""
        now = self.clock()
        if now - self._seen >= self.max_age:
            try:
                st = os.statvfs(self.path)
                self._free = st.f_bavail * st.f_frsize
            except OSError:
                self._free = -1
            self._seen = now
        return self._free

    def shortage(self, min_free: int, need: int = 0) -> str | None:
        """Why a message of ``need`` bytes may not be taken now, or None. ``min_free``:
        what must stay free afterwards; 0 turns the check off (the spool's writes then
        meet a full disk as ENOSPC)."""
        if not min_free:
            return None
        free = self.free()
        if free < 0:
            return None
        if free - need < min_free:
            return (f"queue file system {self.path}: {_mib(free)} free, "
                    + (f"message of {_mib(need)} declared, " if need else "")
                    + f"queue.min_free is {_mib(min_free)}")
        return None


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
