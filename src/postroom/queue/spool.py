"""The durable spool: a message is on disk, file and directory, before ``put`` returns, and
the SMTP layer replies 250 only after that.

Layout (``SITE/queue/``, passed in as ``root``)::

    queue/
      lock              flock: every process using the spool holds it shared
      msg/ID.msg        the raw message as received (Received header included); written once,
                        never moved, removed only with the message
      active/ID.env     the envelope (JSON, ``cat`` it) of a deliverable message
      hold/ID.env       ... of a message held by the admin (not delivered until released)
      corrupt/ID.env    an envelope that cannot be read, moved here by load() or recover();
                        never deleted by postroom (look, repair, move back to active/ by hand;
                        its message stays in msg/)
      tmp/              writes in progress: ID.env (a put), ID.PID.TID.env (an update),
                        ID.N.del (a delete), NAME.claim (a spare being taken); only
                        recover() looks in here
      free/             spare files of deleted messages and replaced envelopes, reused by
                        later writes (contents meaningless; may be removed at any time)

A message is queued exactly when its ``ID.env`` is in ``active/`` or ``hold/``: the envelope
file is the commit record, and the directory it is in is the message's state.

- ``put``: make ``msg/ID.msg`` (exclusively: that claims the ID), write, fsync; write and
  fsync ``tmp/ID.env``; fsync ``msg/``; rename ``tmp/ID.env`` to ``active/ID.env``; fsync
  ``active/``; return. A crash before the rename leaves ``tmp/ID.env`` and an ``ID.msg`` that
  no envelope names: invisible to everything, removed by ``recover()``. After the rename the
  message is complete. If the last fsync fails the message is taken back out before the error
  is raised, so a client that retries after our 4xx does not get it twice.
- ``hold``, ``release`` and moving to ``corrupt/`` are one rename of the small envelope file,
  so a message is always in exactly one state, and ``message_path`` never changes.
- ``update`` writes ``tmp/ID.PID.TID.env``, fsyncs it, renames it over the envelope and
  fsyncs that directory; the message file is not touched.
- ``delete`` renames the envelope into ``tmp/`` and fsyncs (the message is gone at that
  moment), then moves both files to ``free/``.
- Changes to one message (update, modify, hold, release, delete, quarantine) take an
  exclusive flock on its ``ID.msg``, which never moves, so an admin's hold from ``postroom
  queue`` and the runner's update in another process cannot interleave and leave two
  envelopes. That lock is the spool's own: a caller must not flock ``message_path()`` itself
  (an update or delete from the same process would then wait for it forever).

Why two files, and why the message stays put. Creating inodes is the biggest cost of a put on
this machine (ext4 *without a journal* on a shared 2-vCPU VM): the kernel skips every inode
freed in the last minutes when it allocates one (``recently_deleted``), so a create costs
0.01 ms on a quiet directory and 0.5-0.8 ms after heavy churn (perf: up to 60% of the CPU
of a create-heavy run).
Two files (the message, byte-exact and readable without the envelope, and the envelope,
rewritten per attempt) is the least that meets the requirements. A directory per message
(``active/ID/{msg,env}``, every move one rename) was built and measured first: same
guarantees, but its third inode cost 40-55% more CPU per put and 20-40% fewer puts/s in
interleaved runs. A flat ``ID.msg`` + ``ID.env`` pair moved together between directories
needs two renames per hold and repair rules for a half-moved pair; keeping the message still
and moving only the envelope (qmail keeps ``mess/`` apart from its queue state too) avoids it.

Reusing files. For the same reason deleted messages and replaced envelopes are not unlinked
but kept in ``free/`` (at most POOL_MAX files of at most POOL_FILE_MAX bytes), and new
messages and envelopes overwrite them: no inode to allocate, and a 4 KiB message that fits
reuses its block. A spare is claimed by renaming it out of ``free/`` (one winner, also
between processes), checked to have no other name, linked at its new name and rewritten
(pwrite, ftruncate, fsync) before anything names it. Measured with puts and deletes in
steady state (15,000 messages, 100 writers): 1.07 against 1.86 ms CPU per message and about
+30% messages/s; short runs +12-24%.

Group commit, in the event loop. ``put`` writes and fsyncs in the event loop's own thread,
and every put asked for during one pass of the loop is committed together: each message and
envelope written and fsynced, then one fsync of ``msg/``, the renames, one fsync of
``active/`` for all of them. The loop blocks meanwhile; ``postroom serve`` runs two intake
processes per core so that another process uses the core (Postfix's cleanup processes block
in fsync the same way). An fsync costs about 0.16 ms here. An earlier version handed each put
to a pool of 32 writer threads that shared the directory fsyncs between them: the same
durability, but the hand-overs (each os call releases and retakes the GIL while the event
loop wants it) cost more than the fsyncs. perf showed a quarter of the intake's CPU in
futex waits and wake-ups, and the intake benchmark measured 3.2 ms of CPU per message with
the threads against 2.3 ms without, and 524 against 728 messages/s (2 processes with
threads, 4 without; ``bench/bench_intake.py``). An append-only segment log would save the
inodes and most fsyncs, but turns per-recipient updates, hold and salvage into a
compactor's job.

Measured with ``bench/spool_put.py --churn`` (one process, 4 KiB messages): about 1,150
puts/s with one writer and 1,390 with 20 (whose puts share the directory fsyncs) at
0.4-0.5 ms of CPU per put; put + delete, the steady state, 840-1,050 messages/s at
0.6-0.7 ms. Raw create+fsync reaches 3,500/s from one thread and 8,400/s from 20.

Processes. Several processes may use one spool at once (intake workers, the queue runner,
``postroom queue``, ``postroom-sendmail``): IDs carry the process ID (``ids.py``) and are
claimed by the exclusive creation of ``msg/ID.msg``, and every process holds ``queue/lock``
shared. ``recover()`` removes leftovers of interrupted writes at once only when it gets that
lock exclusively, i.e. no other process has the spool open; otherwise only leftovers older
than an hour, which no running put can own. A Spool made before a fork works in the child
(it takes its own lock there).

Thread safety: every method may be called from any thread; ``put`` and ``aclose`` from the
thread of the event loop that puts.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import itertools
import os
import random
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from postroom.errors import EX_DATAERR, EX_NOUSER, QueueError
from postroom.queue import ids
from postroom.queue.envelope import Envelope

TMP = "tmp"
FREE = "free"
MSG = "msg"
ACTIVE = "active"
HOLD = "hold"
CORRUPT = "corrupt"
SUBDIRS = (TMP, FREE, MSG, ACTIVE, HOLD, CORRUPT)
MSG_SUFFIX = ".msg"
ENV_SUFFIX = ".env"
LOCK_FILE = "lock"

STALE_AGE = 3600.0      # a leftover this old belongs to no running put
POOL_MAX = 2048         # spare files kept in free/ for reuse
POOL_FILE_MAX = 65536   # larger files are removed, not kept

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_REUSE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnknownMessage(QueueError):
    """No queued (active or held) message has this ID."""

    exit_code = EX_NOUSER

    def __init__(self, qid: str) -> None:
        self.qid = qid
        what = "no such message in the queue" if ids.is_valid(qid) else "not a queue ID"
        super().__init__(f"{qid}: {what}")


class CorruptEnvelope(QueueError):
    """The envelope could not be read; it has been moved to ``corrupt/``."""

    exit_code = EX_DATAERR

    def __init__(self, qid: str, reason: str, moved_to: Path) -> None:
        self.qid, self.reason, self.moved_to = qid, reason, moved_to
        super().__init__(f"{qid}: envelope cannot be read ({reason}); moved to {moved_to}")


@dataclass(slots=True)
class Recovery:
    """What ``recover()`` did; paths are relative to the spool root."""

    exclusive: bool                                   # no other process had the spool open
    removed: list[str] = field(default_factory=list)  # leftovers of interrupted writes
    corrupt: list[str] = field(default_factory=list)  # IDs whose envelope went to corrupt/
    kept: list[str] = field(default_factory=list)     # young leftovers of other processes


@dataclass(slots=True)
class _Staged:
    """A put between its writes and the rename that makes it a queued message."""

    qid: str
    envelope: Envelope
    saved: tuple[str, int]   # the envelope's id and size before the put, restored on error
    staged: str              # tmp/ID.env
    target: str              # active/ID.env


def _settle(done: asyncio.Future[str], *, result: str = "",
            error: BaseException | None = None) -> None:
    if done.done():  # the waiting put was cancelled; the outcome stands regardless
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


class _DirSync:
    """Group commit of one directory: ``sync()`` returns once an fsync of the directory that
    started after the call has finished. Concurrent callers share one fsync."""

    def __init__(self, path: str) -> None:
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
        fd = os.open(self.path, _DIR_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Pool:
    """Spare files in ``free/``, reused for new messages and envelopes instead of creating
    files (see "Reusing files" in the module docstring).

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
                _unlink(claim)
                continue
            st = os.fstat(fd)
            if st.st_nlink != 1 or not stat.S_ISREG(st.st_mode):
                os.close(fd)
                _unlink(claim)  # drops only our name; the file is not ours to reuse
                continue
            try:
                os.link(claim, dest)
            except BaseException:
                os.close(fd)
                self._give_name(claim)
                raise
            finally:
                _unlink(claim)
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
                _unlink(path)
            return None
        name = f"{os.getpid()}.{next(self._counter)}"
        try:
            (os.link if link else os.rename)(path, f"{self.free_dir}/{name}")
        except OSError:
            if not link:
                _unlink(path)
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


class Spool:
    """The queue directory of one site. See the module docstring for layout and guarantees."""

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
            raise QueueError(f"cannot use spool {self.root}: {_describe(e)}") from e
        self._closed = False
        self._pid = os.getpid()
        self._guard = threading.Lock()
        self._batch: list[tuple[Envelope, bytes, asyncio.Future[str]]] = []
        self._syncs = _dir_syncs(self.root)
        self._pool = _Pool(self.root)
        self._inflight: set[str] = set()  # IDs this process is putting
        self._lock_fd = -1

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Commit the puts asked for and not yet written, and release the spool lock. Call
        it from the thread of the event loop that puts (``aclose``), if there is one."""
        self._after_fork()
        if self._batch:
            self._commit_batch()
        with self._guard:
            self._closed = True
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
            self._lock_fd = -1

    async def aclose(self) -> None:
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

    # ---------------------------------------------------------------- putting

    async def put(self, envelope: Envelope, data: bytes) -> str:
        """Queue a message from the event loop; durable when this returns. Returns the
        queue ID and sets ``envelope.id`` and ``envelope.size``.

        The writes and fsyncs run in the event loop itself (see "Group commit, in the
        event loop" above): every put asked for during one pass of the loop is committed
        together, sharing the directory fsyncs.

        A caller that must name the ID before the message is complete (the Received header
        says ``id ...``) sets ``envelope.id = ids.new_id()`` first; put then keeps that ID
        (QueueError if it is in use). If the awaiting task is cancelled the write still
        finishes (the client got no 250, so at worst it sends the message again)."""
        self._after_fork()
        if self._closed:
            raise QueueError("the spool is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()
        self._batch.append((envelope, data, done))
        if len(self._batch) == 1:
            loop.call_soon(self._commit_batch)
        return await done

    def put_sync(self, envelope: Envelope, data: bytes, *, held: bool = False) -> str:
        """Queue a message from a thread or a command without an event loop; same
        guarantees as ``put``. ``held``: straight into ``hold/``, never deliverable on the
        way."""
        if self._closed:
            raise QueueError("the spool is closed")
        return self._put(envelope, data, HOLD if held else ACTIVE)

    def _commit_batch(self) -> None:
        """Commit every put of this pass of the event loop: stage each (message and
        envelope written and fsynced), then publish them together: one fsync of ``msg/``,
        the renames into ``active/``, one fsync of ``active/``; then answer each put."""
        batch, self._batch = self._batch, []
        try:
            staged: list[_Staged] = []
            waiting: list[asyncio.Future[str]] = []
            for envelope, data, done in batch:
                try:
                    staged.append(self._stage(envelope, data))
                    waiting.append(done)
                except BaseException as e:  # handed to the waiting put
                    _settle(done, error=e)
            if staged:
                outcomes = self._publish(staged, ACTIVE, lambda name: self._syncs[name].flush())
                for done, outcome in zip(waiting, outcomes, strict=True):
                    if isinstance(outcome, QueueError):
                        _settle(done, error=outcome)
                    else:
                        _settle(done, result=outcome)
        finally:  # an unexpected error: no put may wait forever (the loop logs the error)
            for _, _, done in batch:
                _settle(done, error=QueueError("cannot queue message: internal error"))

    def _put(self, envelope: Envelope, data: bytes, state: str = ACTIVE) -> str:
        item = self._stage(envelope, data, state)
        # sync(): threads putting at once share the directory fsyncs
        (outcome,) = self._publish([item], state, lambda name: self._syncs[name].sync())
        if isinstance(outcome, QueueError):
            raise outcome
        return outcome

    def _publish(self, items: list[_Staged], state: str,
                 sync: Callable[[str], None]) -> list[str | QueueError]:
        """The second half of a put, for staged messages: ``msg/`` made durable (the
        messages before their envelopes appear), each envelope renamed into ``state``,
        that directory made durable. Returns each one's ID, or the error that undid it."""
        try:
            sync(MSG)
        except OSError as e:
            for item in items:
                self._unstage(item)
                self._forget(item.qid)
            return [QueueError(f"cannot queue message: {_describe(e)}")] * len(items)
        outcomes: list[str | QueueError] = []
        for item in items:
            try:
                os.rename(item.staged, item.target)
                outcomes.append(item.qid)
            except OSError as e:
                self._unstage(item)
                outcomes.append(QueueError(f"cannot queue message: {_describe(e)}"))
            finally:
                self._forget(item.qid)
        try:
            sync(state)
        except OSError as e:
            error = QueueError(f"cannot queue message: {_describe(e)}")
            for i, item in enumerate(items):
                if outcomes[i] == item.qid:
                    self._take_out(item.qid, item.target)
                    item.envelope.id, item.envelope.size = item.saved
                    outcomes[i] = error
        return outcomes

    def _stage(self, envelope: Envelope, data: bytes, state: str = ACTIVE) -> _Staged:
        """Claim an ID, write and fsync the message and its envelope (in ``tmp/``).
        Nothing names the message yet; on error nothing is left behind."""
        self._share_lock()
        data = bytes(data)
        saved = envelope.id, envelope.size
        qid, fd = self._claim(envelope.id)
        item = _Staged(qid, envelope, saved, f"{self._tmp}/{qid}{ENV_SUFFIX}",
                       self._env(state, qid))
        try:
            try:
                envelope.id, envelope.size = qid, len(data)
                meta = envelope.to_json()
                _fill(fd, data)
            finally:
                os.close(fd)
            self._write_new(item.staged, meta)
        except BaseException as e:
            self._unstage(item)
            self._forget(qid)
            if isinstance(e, OSError):
                raise QueueError(f"cannot queue message: {_describe(e)}") from e
            if isinstance(e, ValueError):  # e.g. an envelope that JSON cannot encode
                raise QueueError(f"cannot queue message: bad envelope: {e}") from e
            raise
        return item

    def _unstage(self, item: _Staged) -> None:
        _unlink(item.staged)
        _unlink(self._msg(item.qid))
        item.envelope.id, item.envelope.size = item.saved

    def _claim(self, preset: str) -> tuple[str, int]:
        """Pick an ID and create its message file exclusively (also between processes);
        returns the ID and the open, empty message file."""
        if preset and not ids.is_valid(preset):
            raise QueueError(f"cannot queue message: {preset!r} is not a valid queue ID")
        for _ in range(1 if preset else 100):
            qid = preset or ids.new_id()
            with self._guard:
                self._inflight.add(qid)
            try:
                fd = self._new_file(self._msg(qid))
            except FileExistsError:
                self._forget(qid)
                continue
            except OSError as e:
                self._forget(qid)
                raise QueueError(f"cannot queue message: {_describe(e)}") from e
            # An envelope without a message (left by hand, or a corrupt one) keeps its ID.
            if self._where(qid, CORRUPT) is None:
                return qid, fd
            os.close(fd)
            _unlink(self._msg(qid))
            self._forget(qid)
        if preset:
            raise QueueError(f"cannot queue message: queue ID {preset} is in use")
        raise QueueError("cannot queue message: no unused queue ID found")

    def _new_file(self, path: str) -> int:
        """``path`` created (a spare reused if there is one), open for writing; its old
        contents are overwritten by _fill. FileExistsError if ``path`` exists."""
        fd = self._pool.take(path)
        return os.open(path, _NEW_FILE_FLAGS, 0o600) if fd is None else fd

    def _write_new(self, path: str, data: bytes) -> None:
        try:
            fd = self._new_file(path)
        except FileExistsError:  # a leftover of a crashed process that had the same PID
            _unlink(path)
            fd = self._new_file(path)
        try:
            _fill(fd, data)
        finally:
            os.close(fd)

    def _forget(self, qid: str) -> None:
        with self._guard:
            self._inflight.discard(qid)

    def _take_out(self, qid: str, target: str) -> None:
        """Best effort: remove a message whose put failed after the rename."""
        grave = f"{self._tmp}/{qid}.{time.time_ns()}.del"
        try:
            os.rename(target, grave)
        except OSError:
            return
        _unlink(self._msg(qid))
        _unlink(grave)

    # ---------------------------------------------------------------- changing

    def update(self, envelope: Envelope) -> None:
        """Replace the stored envelope with ``envelope`` (matched by ``envelope.id``),
        atomically and durably, wherever the message is (active or held). Synchronous: call
        it from a thread in async code."""
        qid = envelope.id
        with self._locked(qid):
            self._replace(envelope, self._state(qid, locked=True))

    def modify(self, qid: str, change: Callable[[Envelope], bool]) -> Envelope:
        """Load the envelope, let ``change`` edit it and, if it returns True, store it, all
        under the message's lock: for commands that edit a message the runner may be
        updating (a plain load + update could write back an older state over the
        runner's)."""
        with self._locked(qid):
            state, raw = self._read_env(qid, locked=True)
            try:
                envelope = parse_envelope(raw)
            except ValueError as e:
                raise CorruptEnvelope(qid, str(e), self._quarantine(qid, state)) from None
            envelope.id, envelope.held = qid, state == HOLD
            if change(envelope):
                self._replace(envelope, state)
            return envelope

    def _replace(self, envelope: Envelope, state: str) -> None:
        """Write a new envelope file over the old one; the caller holds the lock."""
        qid = envelope.id
        staged = f"{self._tmp}/{qid}.{os.getpid()}.{threading.get_ident()}{ENV_SUFFIX}"
        current = self._env(state, qid)
        spare = None
        try:
            self._write_new(staged, envelope.to_json())
            spare = self._pool.give(current, link=True)  # keep the old file for reuse
            os.rename(staged, current)
        except (OSError, ValueError) as e:
            _unlink(staged)
            if spare is not None:
                _unlink(f"{self._pool.free_dir}/{spare}")
            what = _describe(e) if isinstance(e, OSError) else f"bad envelope: {e}"
            raise QueueError(f"{qid}: cannot update the envelope: {what}") from e
        if spare is not None:
            self._pool.register(spare)
        self._sync_dirs(state, what=f"{qid}: envelope updated but")

    def hold(self, qid: str) -> None:
        """Stop delivery of a message until ``release``; holding a held message is a no-op."""
        self._move(qid, HOLD)

    def release(self, qid: str) -> None:
        """Make a held message deliverable again; releasing an active one is a no-op."""
        self._move(qid, ACTIVE)

    def _move(self, qid: str, dest: str) -> None:
        with self._locked(qid):
            state = self._state(qid, locked=True)
            if state == dest:
                return
            try:
                os.rename(self._env(state, qid), self._env(dest, qid))
            except OSError as e:
                raise QueueError(f"{qid}: cannot move to {dest}/: {_describe(e)}") from e
            self._sync_dirs(dest, state, what=f"{qid}: moved to {dest}/ but")

    def delete(self, qid: str, *, wait: bool = True) -> None:
        """Remove a message (active or held) for good. ``wait=False``: BlockingIOError
        instead of waiting when another process is changing the message (an event loop
        then does it in a thread)."""
        with self._locked(qid, wait=wait):
            state = self._state(qid, locked=True)
            grave = f"{self._tmp}/{qid}.{time.time_ns()}.del"
            try:
                os.rename(self._env(state, qid), grave)
            except OSError as e:
                raise QueueError(f"{qid}: cannot delete: {_describe(e)}") from e
            try:
                self._sync_dirs(state, what=f"{qid}: deleted but")
            finally:
                self._pool.give(self._msg(qid))
                self._pool.give(grave)

    @contextmanager
    def _locked(self, qid: str, *, wait: bool = True) -> Iterator[None]:
        """Hold the message's flock (on its never-moving ID.msg) for one change."""
        _check_id(qid)
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
            raise QueueError(f"{qid}: cannot open {self._msg(qid)}: {_describe(e)}") from e
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
                             f"{self.corrupt_dir}: {_describe(e)}") from e
        self._sync_dirs(CORRUPT, state, what=f"{qid}: moved to corrupt/")
        return dest

    def _sync_dirs(self, *names: str, what: str) -> None:
        try:
            for name in names:
                self._syncs[name].sync()
        except OSError as e:
            raise QueueError(f"{what} that is not yet durable: {_describe(e)}") from e

    # ---------------------------------------------------------------- reading

    def ids(self, include_held: bool = True) -> list[str]:
        """IDs of queued messages in arrival order (active, and held unless told not to)."""
        found: set[str] = set()
        for state in (ACTIVE, HOLD) if include_held else (ACTIVE,):
            found.update(self._listed(state))
        return sorted(found)

    def is_held(self, qid: str) -> bool:
        return self._state(qid) == HOLD

    def message_path(self, qid: str) -> Path:
        """The message file; it stays where it is until the message is deleted."""
        self._state(qid)
        return Path(self._msg(qid))

    def envelope_path(self, qid: str) -> Path:
        """Where the envelope file is now (a hold or release moves it)."""
        return Path(self._env(self._state(qid), qid))

    def read_message(self, qid: str) -> bytes:
        self._state(qid)
        try:
            return _read(self._msg(qid))
        except FileNotFoundError:
            state = self._where(qid)
            if state is None:  # deleted meanwhile
                raise UnknownMessage(qid) from None
            raise CorruptEnvelope(qid, "the message file is missing",
                                  self._quarantine(qid, state)) from None
        except OSError as e:
            raise QueueError(f"{qid}: cannot read {self._msg(qid)}: {_describe(e)}") from e

    def load(self, qid: str) -> Envelope:
        """The envelope of a queued message, ``held`` set from where it is. An envelope that
        cannot be parsed is moved to ``corrupt/`` and CorruptEnvelope raised."""
        state, raw = self._read_env(qid)
        try:
            envelope = parse_envelope(raw)
        except ValueError:
            with self._locked(qid):  # a concurrent update may have replaced it meanwhile
                state, raw = self._read_env(qid, locked=True)
                try:
                    envelope = parse_envelope(raw)
                except ValueError as e:
                    raise CorruptEnvelope(qid, str(e), self._quarantine(qid, state)) from None
        envelope.id = qid
        envelope.held = state == HOLD
        return envelope

    def _read_env(self, qid: str, *, locked: bool = False) -> tuple[str, bytes]:
        for _ in range(1 if locked else 3):
            state = self._state(qid, locked=locked)
            try:
                return state, _read(self._env(state, qid))
            except FileNotFoundError:  # held or released between looking and reading
                continue
            except OSError as e:
                raise QueueError(f"{qid}: cannot read its envelope: {_describe(e)}") from e
        if locked:
            raise UnknownMessage(qid)
        with self._locked(qid):  # moves take the lock, so this look is final
            return self._read_env(qid, locked=True)

    def _state(self, qid: str, *, locked: bool = False) -> str:
        """ACTIVE or HOLD, or UnknownMessage. ``locked``: the caller holds the message's
        lock, so nothing moves it."""
        _check_id(qid)
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
            raise QueueError(f"cannot list {self.root / state}: {_describe(e)}") from e

    def _msg(self, qid: str) -> str:
        return f"{self._msg_dir}/{qid}{MSG_SUFFIX}"

    def _env(self, state: str, qid: str) -> str:
        return f"{self._root}/{state}/{qid}{ENV_SUFFIX}"

    # ---------------------------------------------------------------- startup

    def recover(self) -> Recovery:
        """Startup check: remove leftovers of interrupted writes, and move envelopes that
        cannot be read, or whose message file is missing, to ``corrupt/``.

        Leftovers that may belong to another process still using the spool are kept unless
        older than an hour. Reads every envelope once, so it takes a moment on a big queue."""
        self._share_lock()
        exclusive = self._try_exclusive()
        report = Recovery(exclusive=exclusive)
        cutoff = time.time() - STALE_AGE
        with self._guard:
            busy = set(self._inflight)
        mine = f".{os.getpid()}."  # this process's envelope updates in tmp/

        def sweep(directory: str, name: str) -> None:
            path = self.root / directory / name
            try:
                stale = exclusive or path.lstat().st_mtime < cutoff
            except FileNotFoundError:
                return
            if stale:
                _unlink(path)
                report.removed.append(f"{directory}/{name}")
            else:
                report.kept.append(f"{directory}/{name}")

        for name in os.listdir(self.tmp_dir):
            if name.split(".")[0] not in busy and mine not in name:
                sweep(TMP, name)
        for state in (ACTIVE, HOLD):
            for qid in self._listed(state):
                try:
                    self.load(qid)
                    if not os.path.exists(self._msg(qid)):
                        self._quarantine(qid, self._state(qid))
                        report.corrupt.append(qid)
                except CorruptEnvelope:
                    report.corrupt.append(qid)
                except UnknownMessage:  # deleted meanwhile
                    continue
        spares = os.listdir(self.pool_dir)
        for n, name in enumerate(spares):  # a spare with a second name must not be reused
            try:
                st = (self.pool_dir / name).lstat()
            except FileNotFoundError:
                continue
            if (n >= POOL_MAX or st.st_nlink != 1 or not stat.S_ISREG(st.st_mode)
                    or st.st_size > POOL_FILE_MAX):
                _unlink(f"{self.pool_dir}/{name}")
        corrupt = {n.split(".")[0] for n in os.listdir(self.corrupt_dir)}
        for name in os.listdir(self.msg_dir):
            qid = name.removesuffix(MSG_SUFFIX)
            if qid in busy or qid in corrupt or self._where(qid) is not None:
                continue
            sweep(MSG, name)  # no envelope names it: an interrupted put or delete
        return report

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
                raise QueueError(f"cannot use spool {self.root}: {_describe(e)}") from e
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
        self._syncs = _dir_syncs(self.root)
        self._pool = _Pool(self.root)
        self._inflight = set()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # the parent's descriptor stays open, so does its lock
        self._lock_fd = -1


# -------------------------------------------------------------------- helpers


def _dir_syncs(root: Path) -> dict[str, _DirSync]:
    return {name: _DirSync(f"{root}/{name}") for name in SUBDIRS}


def _check_id(qid: str) -> None:
    if not ids.is_valid(qid):
        raise UnknownMessage(str(qid))


def _fill(fd: int, data: bytes) -> None:
    """Make the file hold exactly ``data`` (it may be a reused one) and fsync it."""
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)
    if os.fstat(fd).st_size != len(data):
        os.ftruncate(fd, len(data))
    os.fsync(fd)


def parse_envelope(raw: bytes) -> Envelope:
    """Envelope.from_json, with every way bad data fails turned into ValueError."""
    try:
        envelope = Envelope.from_json(raw)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, bad state
        raise ValueError(str(e)) from None
    except (TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"unexpected structure: {type(e).__name__}: {e}") from None
    if not isinstance(envelope.sender, str) or not isinstance(envelope.arrival, int | float):
        raise ValueError("unexpected structure: sender or arrival has the wrong type")
    return envelope


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _unlink(path: str | os.PathLike[str]) -> None:
    """Remove a file if it is there; a file that cannot be removed is left to recover()."""
    with suppress(OSError):
        os.unlink(path)


def _describe(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{e.strerror} (spool disk full)"
    where = f": {e.filename}" if e.filename else ""
    return f"{e.strerror or e}{where}"
