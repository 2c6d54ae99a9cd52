"""Reading the queue: IDs, paths, messages and envelopes.

Reads take no lock: a message may be held, released or deleted between looking and
reading, so a read that misses looks again, and finally under the message's lock (every
move takes it, so a look under it is final). An envelope that cannot be parsed is moved to
``corrupt/`` (CorruptEnvelope) rather than left to fail every later read.
"""

from __future__ import annotations

from pathlib import Path

from postroom.envelope import Envelope
from postroom.errors import QueueError
from postroom.queue.core import SpoolCore
from postroom.queue.layout import (
    ACTIVE,
    HOLD,
    CorruptEnvelope,
    UnknownMessage,
    describe,
    parse_envelope,
    read,
)


class Reading(SpoolCore):
    """A Spool's part that reads queued messages."""

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
            return read(self._msg(qid))
        except FileNotFoundError:
            state = self._where(qid)
            if state is None:  # deleted meanwhile
                raise UnknownMessage(qid) from None
            raise CorruptEnvelope(qid, "the message file is missing",
                                  self._quarantine(qid, state)) from None
        except OSError as e:
            raise QueueError(f"{qid}: cannot read {self._msg(qid)}: {describe(e)}") from e

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
