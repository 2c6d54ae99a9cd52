"""The durable spool: a message is on disk, file and directory, before ``put`` returns, and
the SMTP layer replies 250 only after that.

``Spool`` is the one class callers use; it is put together from one part per mechanism:

- ``postroom.queue.layout``: directory names, suffixes, what each file means, the envelope
  format, the errors (the on-disk protocol of every operation is described there);
- ``postroom.queue.core``: the state shared by the parts, the spool lock and the
  per-message lock, finding a message's state, moving a bad envelope to ``corrupt/``;
- ``postroom.queue.commit``: ``put`` and ``put_sync``, and the group commit of the puts of
  one event-loop pass, beside the loop (why rounds, and why each directory fsync);
- ``postroom.queue.dirsync``: one directory fsync shared by the threads waiting for it;
- ``postroom.queue.freelist``: spare files reused instead of creating inodes;
- ``postroom.queue.changes``: update, modify, hold, release, delete;
- ``postroom.queue.reading``: ids, paths, messages, envelopes;
- ``postroom.queue.recover``: cleaning up after a crash;
- ``postroom.safeio``: the write/fsync/rename primitives underneath.

Every name other modules use (Spool, UnknownMessage, CorruptEnvelope, Recovery,
parse_envelope, ACTIVE, HOLD, ...) stays importable from here.

Durability in short: the envelope file ``active/ID.env`` (or ``hold/ID.env``) is the commit
record; the message file is fsynced, then ``msg/``, before the envelope is renamed into
place, and that directory is fsynced before the call returns. The event loop's puts are
made durable in rounds by a commit thread while the loop goes on (``postroom.queue.commit``).

Thread safety: every method may be called from any thread; ``put`` and ``aclose`` from the
thread of the event loop that puts.
"""

from __future__ import annotations

import asyncio
import os
from types import TracebackType

from postroom.queue.changes import Changing
from postroom.queue.commit import Putting, Staged
from postroom.queue.dirsync import DirSync, dir_syncs
from postroom.queue.freelist import FreeList
from postroom.queue.layout import (
    ACTIVE,
    CORRUPT,
    ENV_SUFFIX,
    FREE,
    HOLD,
    LOCK_FILE,
    MSG,
    MSG_SUFFIX,
    POOL_FILE_MAX,
    POOL_MAX,
    STALE_AGE,
    SUBDIRS,
    TMP,
    CorruptEnvelope,
    UnknownMessage,
    parse_envelope,
)
from postroom.queue.recover import Recovering, Recovery

__all__ = [
    "ACTIVE", "CORRUPT", "ENV_SUFFIX", "FREE", "HOLD", "LOCK_FILE", "MSG", "MSG_SUFFIX",
    "POOL_FILE_MAX", "POOL_MAX", "STALE_AGE", "SUBDIRS", "TMP", "CorruptEnvelope", "Recovery",
    "Spool", "UnknownMessage", "parse_envelope",
]

# The old private names, for tests and tools that reach into the spool's machinery.
_DirSync = DirSync
_Pool = FreeList
_Staged = Staged
_dir_syncs = dir_syncs


class Spool(Putting, Changing, Recovering):
    """The queue directory of one site. See the module docstring for the parts, and
    ``postroom.queue.layout`` for layout and guarantees."""

    def close(self) -> None:
        """Commit the puts asked for and not yet written, and release the spool lock. Call
        it from the thread of the event loop that puts (``aclose``), if there is one."""
        self._after_fork()
        if self._committer is not None:  # the round in the commit thread finishes first
            self._committer.shutdown(wait=True)
            self._committer = None
        self._commit_now()
        if self._fsyncers is not None:
            self._fsyncers.shutdown(wait=True)
            self._fsyncers = None
        for dir_sync in self._syncs.values():  # deletes' fsyncs asked for, done
            dir_sync.close()
        with self._guard:
            self._closed = True
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
            self._lock_fd = -1

    async def aclose(self) -> None:
        """``close`` once the commit thread has answered every put of this loop."""
        while self._committing and not self._closed:
            await asyncio.sleep(0.001)
        self.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Spool:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
