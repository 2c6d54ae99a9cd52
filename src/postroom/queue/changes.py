"""State changes of a queued message: update, modify, hold, release, delete.

Each is done under the message's lock (``SpoolCore._locked``) and is one rename of the small
envelope file (an update: a new file written and fsynced in ``tmp/`` first), followed by an
fsync of every directory that gained or lost a name, so the change survives a crash before
the call returns. A rename never leaves a message in two states or in none. An update keeps
the old envelope file as a spare (``postroom.queue.freelist``); a delete renames the
envelope away first (the message is gone at that moment), then gives both files to the
free list.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from postroom.envelope import Envelope
from postroom.errors import QueueError
from postroom.queue.core import SpoolCore
from postroom.queue.journal import FANOUT_SUFFIX, SENT
from postroom.queue.layout import (
    ACTIVE,
    ENV_SUFFIX,
    HOLD,
    CorruptEnvelope,
    describe,
    parse_envelope,
    unlink,
)


class Changing(SpoolCore):
    """A Spool's part that changes queued messages."""

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
            unlink(staged)
            if spare is not None:
                unlink(f"{self._pool.free_dir}/{spare}")
            what = describe(e) if isinstance(e, OSError) else f"bad envelope: {e}"
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
                raise QueueError(f"{qid}: cannot move to {dest}/: {describe(e)}") from e
            self._sync_dirs(dest, state, what=f"{qid}: moved to {dest}/ but")

    def delete(self, qid: str, *, wait: bool = True, delivered: bool = False) -> None:
        """Remove a message (active or held) for good. ``wait=False``: BlockingIOError
        instead of waiting when another process is changing the message (an event loop
        then does it in a thread). ``delivered``: the message was delivered, so returning
        before the directory fsync risks only a repeat after a power cut
        (``DirSync.sync_later``), not a loss."""
        with self._locked(qid, wait=wait):
            state = self._state(qid, locked=True)
            grave = f"{self._tmp}/{qid}.{time.time_ns()}.del"
            try:
                os.rename(self._env(state, qid), grave)
            except OSError as e:
                raise QueueError(f"{qid}: cannot delete: {describe(e)}") from e
            try:
                if delivered:
                    self._syncs[state].sync_later()
                else:
                    self._sync_dirs(state, what=f"{qid}: deleted but")
                    # a delivered message's runner clears these itself (Journal.clear)
                    unlink(f"{self._root}/{SENT}/{qid}")
                    unlink(f"{self._root}/{SENT}/{qid}{FANOUT_SUFFIX}")
            finally:
                self._pool.give(self._msg(qid))
                self._pool.give(grave)
