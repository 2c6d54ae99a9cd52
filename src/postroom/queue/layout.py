"""The spool's layout on disk: directory names, suffixes, what each file means, and the
envelope file format. Everything here is also what ``postroom queue import`` reads in
another machine's spool (``postroom.ops.salvage``).

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

Why two files, and why the message stays put. Creating inodes is the biggest cost of a put
(on ext4 the kernel skips every inode freed in the last minutes when it allocates one,
``recently_deleted``, so a create gets much dearer after heavy churn). Two files (the
message, byte-exact and readable without the envelope, and the envelope, rewritten per
attempt) is the least that meets the requirements. A directory per message
(``active/ID/{msg,env}``, every move one rename) gives the same guarantees but a third inode
per message, which cost clearly more. A flat ``ID.msg`` + ``ID.env`` pair moved together
between directories needs two renames per hold and repair rules for a half-moved pair;
keeping the message still and moving only the envelope (qmail keeps ``mess/`` apart from
its queue state too) avoids it. (Measurements: docs/performance-history.md.)
"""

from __future__ import annotations

import errno
import os
from contextlib import suppress
from pathlib import Path

from postroom.envelope import Envelope
from postroom.errors import EX_DATAERR, EX_NOUSER, QueueError
from postroom.queue import ids

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


def check_id(qid: str) -> None:
    if not ids.is_valid(qid):
        raise UnknownMessage(str(qid))


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


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def unlink(path: str | os.PathLike[str]) -> None:
    """Remove a file if it is there; a file that cannot be removed is left to recover()."""
    with suppress(OSError):
        os.unlink(path)


def describe(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{e.strerror} (spool disk full)"
    where = f": {e.filename}" if e.filename else ""
    return f"{e.strerror or e}{where}"
