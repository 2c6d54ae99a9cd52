"""The free list: spare files in ``free/``, reused for new messages and envelopes instead of
creating files.

Why. Creating an inode is the dearest part of a put (see "Why two files" in
``postroom.queue.layout``), so deleted messages and replaced envelopes are not unlinked but
kept in ``free/`` (at most POOL_MAX files of at most POOL_FILE_MAX bytes), and new messages
and envelopes overwrite them: no inode to allocate, and a small message that fits reuses its
block. A spare is claimed by renaming it out of ``free/`` (one winner, also between
processes), checked to have no other name, linked at its new name and rewritten (pwrite,
ftruncate, fsync: ``postroom.safeio.overwrite``) before anything names it. (Measurements:
docs/performance-history.md.)
"""

from __future__ import annotations

import itertools
import os
import random
import stat
import threading
import time
from collections import deque
from contextlib import suppress
from pathlib import Path

from postroom.queue.layout import FREE, POOL_FILE_MAX, POOL_MAX, TMP, unlink

_REUSE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class FreeList:
    """Spare files in ``free/``, reused for new messages and envelopes instead of creating
    files (see the module docstring).

    Safe between threads and processes: a spare is claimed by renaming its ``free/`` name
    to a name only the claimer uses, and used only if that is then its single link (the
    old envelope of an update is linked into ``free/`` a moment before the rename that
    replaces it; a crash in between, or before a claim was unlinked, leaves a spare with a
    second name). Anything in ``free/`` may be removed at any time."""

    def __init__(self, root: Path) -> None:
        # str, not Path: these are joined several times per message
        self.free_dir = f"{root}/{FREE}"
        self.tmp_dir = f"{root}/{TMP}"
        self._lock = threading.Lock()
        self._names: deque[str] = deque()
        self._size = 0            # spares in free/, as far as this process knows
        self._listed_at = -1.0    # when free/ was last listed
        self._counter = itertools.count()

    def take(self, dest: str) -> int | None:
        """Link a spare at ``dest`` (which must not exist: FileExistsError) and return it
        open for writing; None when there is no spare."""
        for _ in range(64):
            name = self._next()
            if name is None:
                return None
            claim = f"{self.tmp_dir}/{os.path.basename(dest)}.claim"
            try:
                os.rename(f"{self.free_dir}/{name}", claim)
            except FileNotFoundError:  # another thread or process took it
                continue
            try:
                fd = os.open(claim, _REUSE_FLAGS)
            except OSError:
                unlink(claim)
                continue
            st = os.fstat(fd)
            if st.st_nlink != 1 or not stat.S_ISREG(st.st_mode):
                os.close(fd)
                unlink(claim)  # drops only our name; the file is not ours to reuse
                continue
            try:
                os.link(claim, dest)
            except BaseException:
                os.close(fd)
                self._give_name(claim)
                raise
            finally:
                unlink(claim)
            return fd
        return None

    def give(self, path: str, *, link: bool = False) -> str | None:
        """Keep the file at ``path`` as a spare (``link``: as a second name, the caller
        replaces ``path`` next; then register() the returned name afterwards). A file the
        pool cannot keep is removed (or, with ``link``, left alone)."""
        try:
            size = os.lstat(path).st_size
        except OSError:
            return None
        if size > POOL_FILE_MAX or not self._room():
            if not link:
                unlink(path)
            return None
        name = f"{os.getpid()}.{next(self._counter)}"
        try:
            (os.link if link else os.rename)(path, f"{self.free_dir}/{name}")
        except OSError:
            if not link:
                unlink(path)
            return None
        if not link:
            self.register(name)
        return name

    def register(self, name: str) -> None:
        with self._lock:
            self._names.append(name)
            self._size += 1

    def _room(self) -> bool:
        with self._lock:
            if self._size >= POOL_MAX and time.monotonic() - self._listed_at > 1.0:
                self._list()  # other processes may have taken spares since
            return self._size < POOL_MAX

    def _list(self) -> list[str]:
        try:
            names = os.listdir(self.free_dir)
        except OSError:
            names = []
        self._size, self._listed_at = len(names), time.monotonic()
        return names

    def _give_name(self, claim: str) -> None:
        with suppress(OSError):
            name = f"{os.getpid()}.{next(self._counter)}"
            os.rename(claim, f"{self.free_dir}/{name}")
            self.register(name)

    def _next(self) -> str | None:
        with self._lock:
            if not self._names:
                if time.monotonic() - self._listed_at < 1.0 and not self._size:
                    return None  # found empty a moment ago: do not list it for every put
                names = self._list()
                random.shuffle(names)  # processes refilling at once try different spares
                self._names.extend(names[:128])
                if not self._names:
                    return None
            self._size = max(0, self._size - 1)
            return self._names.popleft()
