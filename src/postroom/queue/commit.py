"""Putting a message: claim an ID, stage the files, publish them; and the group commit of
all puts asked for during one pass of the event loop.

Group commit, in the event loop. ``put`` writes and fsyncs in the event loop's own thread,
and every put asked for during one pass of the loop is committed together: each message and
envelope written and fsynced, then one fsync of ``msg/``, the renames, one fsync of
``active/`` for all of them. The loop blocks meanwhile; ``postroom serve`` runs two intake
processes per core so that another process uses the core (Postfix's cleanup processes block
in fsync the same way). Handing each put to a pool of writer threads that share the
directory fsyncs was tried first: the same durability, but the hand-overs (each os call
releases and retakes the GIL while the event loop wants it) cost more than the fsyncs. An
append-only segment log would save the inodes and most fsyncs, but turns per-recipient
updates, hold and salvage into a compactor's job. (Measurements:
docs/performance-history.md.)

Why ``msg/`` is fsynced before the renames: the envelope in ``active/`` is the commit
record, so the message it names must be durable before it can appear; why ``active/`` is
fsynced before a put returns: until then the rename may not survive a crash, and the client
is answered 250 only after the put returns. ``put_sync`` (threads, commands) does the same
per message, sharing the directory fsyncs between threads (``postroom.queue.dirsync``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from postroom.envelope import Envelope
from postroom.errors import QueueError
from postroom.queue import ids
from postroom.queue.core import SpoolCore
from postroom.queue.layout import ACTIVE, CORRUPT, ENV_SUFFIX, HOLD, MSG, describe, unlink
from postroom.safeio import overwrite


@dataclass(slots=True)
class Staged:
    """A put between its writes and the rename that makes it a queued message."""

    qid: str
    envelope: Envelope
    saved: tuple[str, int]   # the envelope's id and size before the put, restored on error
    staged: str              # tmp/ID.env
    target: str              # active/ID.env


def settle(done: asyncio.Future[str], *, result: str = "",
            error: BaseException | None = None) -> None:
    if done.done():  # the waiting put was cancelled; the outcome stands regardless
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


class Putting(SpoolCore):
    """``put`` and ``put_sync``: a Spool's part that queues new messages."""

    async def put(self, envelope: Envelope, data: bytes) -> str:
        """Queue a message from the event loop; durable when this returns. Returns the
        queue ID and sets ``envelope.id`` and ``envelope.size``.

        The writes and fsyncs run in the event loop itself (see the module docstring):
        every put asked for during one pass of the loop is committed together, sharing the
        directory fsyncs.

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
            staged: list[Staged] = []
            waiting: list[asyncio.Future[str]] = []
            for envelope, data, done in batch:
                try:
                    staged.append(self._stage(envelope, data))
                    waiting.append(done)
                except BaseException as e:  # handed to the waiting put
                    settle(done, error=e)
            if staged:
                outcomes = self._publish(staged, ACTIVE, lambda name: self._syncs[name].flush())
                for done, outcome in zip(waiting, outcomes, strict=True):
                    if isinstance(outcome, QueueError):
                        settle(done, error=outcome)
                    else:
                        settle(done, result=outcome)
        finally:  # an unexpected error: no put may wait forever (the loop logs the error)
            for _, _, done in batch:
                settle(done, error=QueueError("cannot queue message: internal error"))

    def _put(self, envelope: Envelope, data: bytes, state: str = ACTIVE) -> str:
        item = self._stage(envelope, data, state)
        # sync(): threads putting at once share the directory fsyncs
        (outcome,) = self._publish([item], state, lambda name: self._syncs[name].sync())
        if isinstance(outcome, QueueError):
            raise outcome
        return outcome

    def _publish(self, items: list[Staged], state: str,
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
            return [QueueError(f"cannot queue message: {describe(e)}")] * len(items)
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
        """Claim an ID, write and fsync the message and its envelope (in ``tmp/``).
        Nothing names the message yet; on error nothing is left behind."""
        self._share_lock()
        data = bytes(data)
        saved = envelope.id, envelope.size
        qid, fd = self._claim(envelope.id)
        item = Staged(qid, envelope, saved, f"{self._tmp}/{qid}{ENV_SUFFIX}",
                       self._env(state, qid))
        try:
            try:
                envelope.id, envelope.size = qid, len(data)
                meta = envelope.to_json()
                overwrite(fd, data, self._msg(qid))
            finally:
                os.close(fd)
            self._write_new(item.staged, meta)
        except BaseException as e:
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
