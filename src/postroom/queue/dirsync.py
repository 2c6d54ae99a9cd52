"""Directory fsync shared between threads: the group commit of ``put_sync`` and of the
state changes.

A change in the spool is durable only once the directory holding the new name is fsynced
(``postroom.safeio``). Threads that change the same directory at once (``put_sync`` from
several threads, the runner's updates) need not each pay for an fsync: one that *starts*
after a caller's change covers it, so callers that arrive while an fsync runs wait for the
next one and share it. The event loop's puts batch themselves instead
(``postroom.queue.commit``) and call ``flush`` once per batch.
"""

from __future__ import annotations

import threading
from pathlib import Path

from postroom.queue.layout import SUBDIRS
from postroom.safeio import fsync_dir


class DirSync:
    """Group commit of one directory: ``sync()`` returns once an fsync of the directory that
    started after the call has finished. Concurrent callers share one fsync."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._issued = 0   # tickets handed out
        self._done = 0     # every ticket up to this one is durable
        self._busy = False

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

    def flush(self) -> None:
        """One fsync of the directory, now, shared with nobody: for a caller that has
        gathered its changes itself (the event loop's batch of puts)."""
        # Opened per batch, not kept open: a directory replaced under us is still synced.
        fsync_dir(self.path)


def dir_syncs(root: Path) -> dict[str, DirSync]:
    """One DirSync per spool directory."""
    return {name: DirSync(f"{root}/{name}") for name in SUBDIRS}
