"""What every part of the spool shares: the directories, this process's hold on the spool
lock, the per-message lock, finding a message's state, and moving a bad envelope aside.

Processes. Several processes may use one spool at once (intake workers, the queue runner,
``postroom queue``, ``postroom-sendmail``): IDs carry the process ID (``ids.py``) and are
claimed by the exclusive creation of ``msg/ID.msg``, and every process holds ``queue/lock``
shared. A Spool made before a fork works in the child (it takes its own lock there).

Changes to one message (update, modify, hold, release, delete, quarantine) take an
exclusive flock on its ``ID.msg``, which never moves, so an admin's hold from ``postroom
queue`` and the runner's update in another process cannot interleave and leave two
envelopes. That lock is the spool's own: a caller must not flock ``message_path()`` itself
(an update or delete from the same process would then wait for it forever).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from postroom.errors import QueueError
from postroom.queue import ids
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
    SUBDIRS,
    TMP,
    CorruptEnvelope,
    UnknownMessage,
    check_id,
    describe,
    read,
    unlink,
)
from postroom.safeio import NEW_FILE_FLAGS, overwrite

if TYPE_CHECKING:
    from postroom.queue.commit import Staged


class SpoolCore:
    """The state and the lookups the Spool's parts (``commit``, ``changes``, ``reading``,
    ``recover``) build on; see ``postroom.queue.spool``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._root = str(self.root)  # hot paths join strings: cheaper than Path
        self._tmp = f"{self._root}/{TMP}"
        self._msg_dir = f"{self._root}/{MSG}"
        self.tmp_dir = self.root / TMP
        self.pool_dir = self.root / FREE
        self.msg_dir = self.root / MSG
        self.active_dir = self.root / ACTIVE
        self.hold_dir = self.root / HOLD
        self.corrupt_dir = self.root / CORRUPT
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name in SUBDIRS:
                (self.root / name).mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise QueueError(f"cannot use spool {self.root}: {describe(e)}") from e
        self._closed = False
        self._pid = os.getpid()
        self._guard = threading.Lock()
        # the event loop's puts: staged and waiting for the commit thread's next round
        self._batch: list[tuple[Staged, asyncio.Future[str]]] = []
        self._committing = False  # a round is in the commit thread or about to be
        self._committer: ThreadPoolExecutor | None = None
        self._fsyncers: ThreadPoolExecutor | None = None  # the commit thread's helpers
        self._syncs: dict[str, DirSync] = dir_syncs(self.root)
        self._pool = FreeList(self.root)
        self._inflight: set[str] = set()  # IDs this process is putting
        self._lock_fd = -1

    def _new_file(self, path: str) -> int:
        """``path`` created (a spare reused if there is one), open for writing; its old
        contents are overwritten by ``overwrite``. FileExistsError if ``path`` exists."""
        fd = self._pool.take(path)
        return os.open(path, NEW_FILE_FLAGS, 0o600) if fd is None else fd

    def _open_new(self, path: str) -> int:
        """``_new_file``, replacing a leftover of a crashed process that had the same PID."""
        try:
            return self._new_file(path)
        except FileExistsError:
            unlink(path)
            return self._new_file(path)

    def _write_new(self, path: str, data: bytes) -> None:
        fd = self._open_new(path)
        try:
            overwrite(fd, data, path)
        finally:
            os.close(fd)

    @contextmanager
    def _locked(self, qid: str, *, wait: bool = True) -> Iterator[None]:
        """Hold the message's flock (on its never-moving ID.msg) for one change."""
        check_id(qid)
        self._share_lock()
        try:
            fd = os.open(self._msg(qid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            state = self._where(qid)
            if state is None:
                raise UnknownMessage(qid) from None
            raise CorruptEnvelope(qid, "the message file is missing",
                                  self._quarantine(qid, state)) from None
        except OSError as e:
            raise QueueError(f"{qid}: cannot open {self._msg(qid)}: {describe(e)}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            yield
        finally:
            os.close(fd)

    def _quarantine(self, qid: str, state: str) -> Path:
        """Move an envelope that cannot be used to corrupt/ (the message stays in msg/)."""
        dest = Path(self._env(CORRUPT, qid))
        if os.path.lexists(dest):
            dest = self.corrupt_dir / f"{qid}.{time.time_ns()}{ENV_SUFFIX}"
        try:
            os.rename(self._env(state, qid), dest)
        except OSError as e:
            raise QueueError(f"{qid}: envelope cannot be read and cannot be moved to "
                             f"{self.corrupt_dir}: {describe(e)}") from e
        self._sync_dirs(CORRUPT, state, what=f"{qid}: moved to corrupt/")
        return dest

    def _sync_dirs(self, *names: str, what: str) -> None:
        try:
            for name in names:
                self._syncs[name].sync()
        except OSError as e:
            raise QueueError(f"{what} that is not yet durable: {describe(e)}") from e

    def _read_env(self, qid: str, *, locked: bool = False) -> tuple[str, bytes]:
        for _ in range(1 if locked else 3):
            state = self._state(qid, locked=locked)
            try:
                return state, read(self._env(state, qid))
            except FileNotFoundError:  # held or released between looking and reading
                continue
            except OSError as e:
                raise QueueError(f"{qid}: cannot read its envelope: {describe(e)}") from e
        if locked:
            raise UnknownMessage(qid)
        with self._locked(qid):  # moves take the lock, so this look is final
            return self._read_env(qid, locked=True)

    def _state(self, qid: str, *, locked: bool = False) -> str:
        """ACTIVE or HOLD, or UnknownMessage. ``locked``: the caller holds the message's
        lock, so nothing moves it."""
        check_id(qid)
        for _ in range(1 if locked else 2):
            state = self._where(qid)
            if state is not None:
                return state
        if locked:
            raise UnknownMessage(qid)
        # Not seen twice: not queued, or being held or released right now. Moves take the
        # message's lock, so a look under it is final.
        with self._locked(qid):
            return self._state(qid, locked=True)

    def _where(self, qid: str, *more: str) -> str | None:
        for state in (ACTIVE, HOLD, *more):
            if os.path.lexists(self._env(state, qid)):
                return state
        return None

    def _listed(self, state: str) -> list[str]:
        try:
            with os.scandir(self.root / state) as it:
                return [e.name[:-len(ENV_SUFFIX)] for e in it if e.name.endswith(ENV_SUFFIX)
                        and ids.is_valid(e.name[:-len(ENV_SUFFIX)])]
        except OSError as e:
            raise QueueError(f"cannot list {self.root / state}: {describe(e)}") from e

    def _msg(self, qid: str) -> str:
        return f"{self._msg_dir}/{qid}{MSG_SUFFIX}"

    def _env(self, state: str, qid: str) -> str:
        return f"{self._root}/{state}/{qid}{ENV_SUFFIX}"

    def _share_lock(self) -> None:
        """Hold ``queue/lock`` shared in this process."""
        self._after_fork()
        if self._lock_fd >= 0:
            return
        with self._guard:
            if self._lock_fd >= 0:
                return
            try:
                fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise QueueError(f"cannot use spool {self.root}: {describe(e)}") from e
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._lock_fd = fd

    def _try_exclusive(self) -> bool:
        """True when no other process holds the spool lock; ours stays shared afterwards."""
        with self._guard:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)  # a failed conversion drops the lock
            return alone

    def _after_fork(self) -> None:
        """In a child forked from the process that made this Spool, start afresh: the
        parent's pending puts are its own, its locks may be copied mid-use, and its
        spool lock is its own."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._guard = threading.Lock()
        self._batch = []
        self._committing = False
        self._committer = self._fsyncers = None  # the parent's threads do not exist here
        self._syncs = dir_syncs(self.root)
        self._pool = FreeList(self.root)
        self._inflight = set()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # the parent's descriptor stays open, so does its lock
        self._lock_fd = -1
