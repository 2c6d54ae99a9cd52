"""Putting a message: claim an ID, stage the files, make them durable, publish them; and
the group commit of the puts of an event loop, whose fsyncs run beside the loop.

Group commit beside the event loop. ``put`` writes the message and its envelope in the
event loop's thread (into the page cache: cheap), and one commit thread per process makes
them durable in rounds: every file of the round and ``msg/`` fsynced at once (by a few
fsync threads, so the file system commits them together), then the renames, then one fsync
of ``active/``. While a round waits for the disk the loop goes on reading other connections
and staging their puts; those make the next round, which starts as soon as the thread is
free. So the batch grows by itself with the load and with the cost of an fsync, and the CPU
keeps working while fsyncs are in flight (the loop used to block in them, and on a disk with
slow fsyncs the cores sat idle).

Why rounds, and not a pool taking single puts: the pool's hand-overs (each os call
releasing and retaking the GIL while the loop wanted it, a future per put) cost more than
the fsyncs; a round costs one hand-over each way. Why the fsyncs of a round in parallel
and not one after another in the commit thread: on a disk where an fsync takes a
millisecond, a round of twenty files would take twenty. (Measurements:
docs/performance.md, "SMTP intake".)

Why ``msg/`` is fsynced before the renames: the envelope in ``active/`` is the commit
record, so the message it names must be durable before it can appear; why ``active/`` is
fsynced before a put returns: until then the rename may not survive a crash, and the client
is answered 250 only after the put returns. ``put_sync`` (threads, commands) does the same
per message in its own thread, sharing the directory fsyncs between threads
(``postroom.queue.dirsync``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from postroom.envelope import Envelope
from postroom.errors import QueueError
from postroom.queue import ids
from postroom.queue.core import SpoolCore
from postroom.queue.layout import ACTIVE, CORRUPT, ENV_SUFFIX, HOLD, MSG, describe, unlink
from postroom.safeio import fsync_fd, rewrite


@dataclass(slots=True)
class Staged:
    """A put between its writes and the rename that makes it a queued message."""

    qid: str
    envelope: Envelope
    saved: tuple[str, int]   # the envelope's id and size before the put, restored on error
    staged: str              # tmp/ID.env
    target: str              # active/ID.env
    open_files: list[tuple[int, str]] = field(default_factory=list)  # written, not fsynced


Waiting = tuple[Staged, asyncio.Future[str]]

# fsyncs of one round in flight at once: the file system commits concurrent fsyncs together
FSYNC_THREADS = 8


def settle(done: asyncio.Future[str], *, result: str = "",
           error: BaseException | None = None) -> None:
    if done.done():  # the waiting put was cancelled; the outcome stands regardless
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


def answer(batch: list[Waiting], outcomes: list[str | QueueError]) -> None:
    """Each waiting put gets its queue ID or its error."""
    for (_, done), outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, QueueError):
            settle(done, error=outcome)
        else:
            settle(done, result=outcome)


class Putting(SpoolCore):
    """``put`` and ``put_sync``: a Spool's part that queues new messages."""

    async def put(self, envelope: Envelope, data: bytes) -> str:
        """Queue a message from the event loop; durable when this returns. Returns the
        queue ID and sets ``envelope.id`` and ``envelope.size``.

        The files are written here and made durable by the commit thread, together with
        every other put staged meanwhile (see the module docstring).

        A caller that must name the ID before the message is complete (the Received header
        says ``id ...``) sets ``envelope.id = ids.new_id()`` first; put then keeps that ID
        (QueueError if it is in use). If the awaiting task is cancelled the write still
        finishes (the client got no 250, so at worst it sends the message again)."""
        self._after_fork()
        if self._closed:
            raise QueueError("the spool is closed")
        loop = asyncio.get_running_loop()
        item = self._stage(envelope, data)
        done: asyncio.Future[str] = loop.create_future()
        self._batch.append((item, done))
        if not self._committing:
            self._committing = True
            # the rest of this pass of the loop joins the batch
            loop.call_soon(self._hand_over, loop)
        return await done

    def put_sync(self, envelope: Envelope, data: bytes, *, held: bool = False) -> str:
        """Queue a message from a thread or a command without an event loop; same
        guarantees as ``put``. ``held``: straight into ``hold/``, never deliverable on the
        way."""
        if self._closed:
            raise QueueError("the spool is closed")
        return self._put(envelope, data, HOLD if held else ACTIVE)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give the staged puts to the commit thread (one round at a time)."""
        batch, self._batch = self._batch, []
        if not batch:
            self._committing = False
            return
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="spool-commit")
        items = [item for item, _ in batch]
        round_ = loop.run_in_executor(self._committer, self._commit, items)
        round_.add_done_callback(lambda r: self._committed(loop, batch, r))

    def _committed(self, loop: asyncio.AbstractEventLoop, batch: list[Waiting],
                   round_: asyncio.Future[list[str | QueueError]]) -> None:
        """In the loop: answer the puts of a round, and start the next with what was
        staged meanwhile."""
        try:
            outcomes: list[str | QueueError] = round_.result()
        except BaseException:  # no put may wait forever (the loop logs the error)
            outcomes = [QueueError("cannot queue message: internal error")] * len(batch)
        answer(batch, outcomes)
        self._hand_over(loop)

    def _commit(self, items: list[Staged]) -> list[str | QueueError]:
        """In the commit thread: every staged file and ``msg/`` fsynced at once (by the
        fsync threads), then the renames and one fsync of ``active/``."""
        if self._fsyncers is None:
            self._fsyncers = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="spool-fsync")
        pool = self._fsyncers
        msg_dir = pool.submit(self._syncs[MSG].flush)
        syncing = [[pool.submit(fsync_fd, fd, path) for fd, path in item.open_files]
                   for item in items]
        outcomes: list[str | QueueError | None] = []
        durable: list[Staged] = []
        for item, waits in zip(items, syncing, strict=True):
            error = self._closed_after(item, waits)
            outcomes.append(error)
            if error is None:
                durable.append(item)
        try:
            msg_dir.result()
        except OSError as e:
            failed = QueueError(f"cannot queue message: {describe(e)}")
            for item in durable:
                self._unstage(item)
                self._forget(item.qid)
            return [failed if o is None else o for o in outcomes]
        if durable:
            published = iter(self._rename_and_sync(durable, ACTIVE,
                                                   lambda name: self._syncs[name].flush()))
            outcomes = [next(published) if o is None else o for o in outcomes]
        return [o for o in outcomes if o is not None]

    def _closed_after(self, item: Staged, waits: list[Future[None]]) -> QueueError | None:
        """Close the staged files once their fsyncs are done; on error the put is undone."""
        files, item.open_files = item.open_files, []
        error: QueueError | None = None
        for (fd, _), wait in zip(files, waits, strict=True):
            try:
                wait.result()
            except OSError as e:
                error = error or QueueError(f"cannot queue message: {describe(e)}")
            finally:
                os.close(fd)
        if error is not None:
            self._unstage(item)
            self._forget(item.qid)
        return error

    def _commit_now(self) -> None:
        """In the loop's thread, at close: the puts staged and not yet handed over."""
        batch, self._batch = self._batch, []
        if batch:
            answer(batch, self._commit([item for item, _ in batch]))

    def _put(self, envelope: Envelope, data: bytes, state: str = ACTIVE) -> str:
        item = self._stage(envelope, data, state)
        error = self._make_durable(item)
        if error is not None:
            raise error
        # sync(): threads putting at once share the directory fsyncs
        (outcome,) = self._publish([item], state, lambda name: self._syncs[name].sync())
        if isinstance(outcome, QueueError):
            raise outcome
        return outcome

    def _make_durable(self, item: Staged) -> QueueError | None:
        """fsync and close the staged files; on error the put is undone."""
        files, item.open_files = item.open_files, []
        error: QueueError | None = None
        for fd, path in files:
            try:
                if error is None:
                    fsync_fd(fd, path)
            except OSError as e:
                error = QueueError(f"cannot queue message: {describe(e)}")
            finally:
                os.close(fd)
        if error is not None:
            self._unstage(item)
            self._forget(item.qid)
        return error

    def _publish(self, items: list[Staged], state: str,
                 sync: Callable[[str], None]) -> list[str | QueueError]:
        """The second half of a put, for staged messages: ``msg/`` made durable (the
        messages before their envelopes appear), then ``_rename_and_sync``. Returns each
        one's ID, or the error that undid it."""
        try:
            sync(MSG)
        except OSError as e:
            for item in items:
                self._unstage(item)
                self._forget(item.qid)
            return [QueueError(f"cannot queue message: {describe(e)}")] * len(items)
        return self._rename_and_sync(items, state, sync)

    def _rename_and_sync(self, items: list[Staged], state: str,
                         sync: Callable[[str], None]) -> list[str | QueueError]:
        """Each envelope renamed into ``state``, that directory made durable."""
        outcomes: list[str | QueueError] = []
        for item in items:
            try:
                os.rename(item.staged, item.target)
                outcomes.append(item.qid)
            except OSError as e:
                self._unstage(item)
                outcomes.append(QueueError(f"cannot queue message: {describe(e)}"))
            finally:
                self._forget(item.qid)
        try:
            sync(state)
        except OSError as e:
            error = QueueError(f"cannot queue message: {describe(e)}")
            for i, item in enumerate(items):
                if outcomes[i] == item.qid:
                    self._take_out(item.qid, item.target)
                    item.envelope.id, item.envelope.size = item.saved
                    outcomes[i] = error
        return outcomes

    def _stage(self, envelope: Envelope, data: bytes, state: str = ACTIVE) -> Staged:
        """Claim an ID, write the message and its envelope (in ``tmp/``), and keep both
        open for ``_make_durable``. Nothing names the message yet; on error nothing is left
        behind."""
        self._share_lock()
        data = bytes(data)
        saved = envelope.id, envelope.size
        qid, fd = self._claim(envelope.id)
        item = Staged(qid, envelope, saved, f"{self._tmp}/{qid}{ENV_SUFFIX}",
                       self._env(state, qid))
        item.open_files.append((fd, self._msg(qid)))
        try:
            envelope.id, envelope.size = qid, len(data)
            meta = envelope.to_json()
            rewrite(fd, data, self._msg(qid))
            item.open_files.append((self._open_new(item.staged), item.staged))
            rewrite(item.open_files[-1][0], meta, item.staged)
        except BaseException as e:
            for open_fd, _ in item.open_files:
                os.close(open_fd)
            item.open_files = []
            self._unstage(item)
            self._forget(qid)
            if isinstance(e, OSError):
                raise QueueError(f"cannot queue message: {describe(e)}") from e
            if isinstance(e, ValueError):  # e.g. an envelope that JSON cannot encode
                raise QueueError(f"cannot queue message: bad envelope: {e}") from e
            raise
        return item

    def _unstage(self, item: Staged) -> None:
        unlink(item.staged)
        unlink(self._msg(item.qid))
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
                raise QueueError(f"cannot queue message: {describe(e)}") from e
            # An envelope without a message (left by hand, or a corrupt one) keeps its ID.
            if self._where(qid, CORRUPT) is None:
                return qid, fd
            os.close(fd)
            unlink(self._msg(qid))
            self._forget(qid)
        if preset:
            raise QueueError(f"cannot queue message: queue ID {preset} is in use")
        raise QueueError("cannot queue message: no unused queue ID found")

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
        unlink(self._msg(qid))
        unlink(grave)
