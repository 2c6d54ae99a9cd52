"""Recovery after a crash: ``Spool.recover()``, run at startup.

A crash can leave writes half done: a staged envelope in ``tmp/`` and a message file that
no envelope names (an interrupted put), a renamed-away envelope or a claim in ``tmp/`` (an
interrupted delete or reuse), a spare with a second name in ``free/``. None of them is
visible as a queued message; recover() removes them. It removes them at once only when it
gets the spool lock exclusively, i.e. no other process has the spool open; otherwise only
leftovers older than STALE_AGE, which no running put can own. Envelopes that cannot be
read, or whose message file is missing, are moved to ``corrupt/``.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field

from postroom.queue.layout import (
    ACTIVE,
    HOLD,
    MSG,
    MSG_SUFFIX,
    POOL_FILE_MAX,
    POOL_MAX,
    STALE_AGE,
    TMP,
    CorruptEnvelope,
    UnknownMessage,
    unlink,
)
from postroom.queue.reading import Reading


@dataclass(slots=True)
class Recovery:
    """What ``recover()`` did; paths are relative to the spool root."""

    exclusive: bool                                   # no other process had the spool open
    removed: list[str] = field(default_factory=list)  # leftovers of interrupted writes
    corrupt: list[str] = field(default_factory=list)  # IDs whose envelope went to corrupt/
    kept: list[str] = field(default_factory=list)     # young leftovers of other processes


class Recovering(Reading):
    """A Spool's part that cleans up after a crash."""

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
                unlink(path)
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
                unlink(f"{self.pool_dir}/{name}")
        corrupt = {n.split(".")[0] for n in os.listdir(self.corrupt_dir)}
        for name in os.listdir(self.msg_dir):
            qid = name.removesuffix(MSG_SUFFIX)
            if qid in busy or qid in corrupt or self._where(qid) is not None:
                continue
            sweep(MSG, name)  # no envelope names it: an interrupted put or delete
        return report
