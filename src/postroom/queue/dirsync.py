"""Directory fsync shared between threads: the group commit of ``put_sync`` and of the
state changes.

A change in the spool is durable only once the directory holding the new name is fsynced
(``postroom.safeio``). Threads that change the same directory at once (``put_sync`` from
several threads, the runner's updates) need not each pay for an fsync: one that *starts*
after a caller's change covers it, so callers that arrive while an fsync runs wait for the
next one and share it. The event loop's puts batch themselves instead
(``postroom.queue.commit``) and call ``flush`` once per batch. A delete after delivery asks
for ``sync_later``: the rename is in the kernel at once (a killed process cannot undo it),
and only a power cut before the fsync can bring the message back, to be delivered again;
Postfix makes the same trade (it never fsyncs after removing a queue file). That fsync
waits ``LATER_DELAY`` first, and is skipped when an fsync of the directory started in the
meantime (under load the next batch of puts makes one): deletes come one by one, as
deliveries end, and would otherwise cost an fsync each, taking turns on the disk with the
fsyncs that clients are waiting for.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from postroom.queue.layout import SUBDIRS
from postroom.safeio import fsync_dir

log = logging.getLogger(__name__)

LATER_DELAY = 0.05  # seconds a delete's directory fsync waits to be shared or made moot


class DirSync:
    """Group commit of one directory: ``sync()`` returns once an fsync of the directory that
    started after the call has finished. Concurrent callers share one fsync."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._issued = 0   # tickets handed out
        self._done = 0     # every ticket up to this one is durable
        self._busy = False
        self._later = False  # a sync_later fsync is asked for and not yet started
        self._started = 0  # fsyncs of the directory begun (flush)
        self._synced = 0   # the latest of them that has succeeded
        self._background: ThreadPoolExecutor | None = None

    def sync(self) -> None:
        with self._cond:
            self._issued += 1
            ticket = self._issued
            while True:
                if self._done >= ticket:
                    return
                if not self._busy:
                    self._busy = True
                    covers = self._issued
                    break
                self._cond.wait()
        ok = False
        try:
            self.flush()
            ok = True
        finally:
            with self._cond:
                self._busy = False
                if ok:
                    self._done = max(self._done, covers)
                self._cond.notify_all()

    def sync_later(self) -> None:
        """Have the directory fsynced soon, by a thread of its own; return at once. For
        changes whose loss in a power cut costs a repeat, not a message (a delete after
        delivery): many of them share one fsync, and nobody waits for it."""
        with self._cond:
            if self._later:
                return
            self._later = True
            asked = self._started  # any fsync begun after this one covers the change
            if self._background is None:
                self._background = ThreadPoolExecutor(1, thread_name_prefix="spool-dirsync")
            background = self._background
        background.submit(self._sync_soon, asked)

    def _sync_soon(self, asked: int) -> None:
        time.sleep(LATER_DELAY)
        with self._cond:
            self._later = False  # changes from now on ask for the next one
            if self._synced > asked:
                return
        try:
            self.sync()
        except OSError as e:
            log.warning("cannot fsync %s: %s (a message delivered just now may be "
                        "delivered again after a power cut)", self.path, e)

    def close(self) -> None:
        """Wait for the fsync asked for by ``sync_later``, if any."""
        with self._cond:
            background, self._background = self._background, None
        if background is not None:
            background.shutdown(wait=True)

    def flush(self) -> None:
        """One fsync of the directory, now, shared with nobody: for a caller that has
        gathered its changes itself (the event loop's batch of puts)."""
        with self._cond:
            self._started += 1
            number = self._started
        # Opened per batch, not kept open: a directory replaced under us is still synced.
        fsync_dir(self.path)
        with self._cond:
            self._synced = max(self._synced, number)


def dir_syncs(root: Path) -> dict[str, DirSync]:
    """One DirSync per spool directory."""
    return {name: DirSync(f"{root}/{name}") for name in SUBDIRS}
