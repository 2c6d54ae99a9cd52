"""The sent journal: which deliveries of a message went out during a round that has not
yet stored its envelope.

A delivery round stores the envelope once, at its end. For a message with many
recipients that is sent one transaction per recipient (a list post to 2,000 members), a
``kill -9`` half-way would otherwise send every copy already delivered again after the
restart. So each copy that the remote server accepted is appended to ``sent/ID`` (one
line: the delivery's index in ``Envelope.deliveries`` and the reply), with ``write`` and
no fsync: the line is in the kernel before the next transaction starts, which survives the
death of the process (what a crash of postroom is); only a crash of the machine can lose
it, and then the copies repeat, never vanish. The next round (in this process or after a
restart) applies the journal to the envelope it loads, and the journal is removed once
the envelope that holds the same facts is on disk.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from postroom.envelope import Envelope
from postroom.types import RcptState

SENT = "sent"


class SentJournal:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.dir = Path(root) / SENT
        self._fds: dict[str, int] = {}

    def _fd(self, qid: str) -> int:
        fd = self._fds.get(qid)
        if fd is None:
            self.dir.mkdir(exist_ok=True)
            fd = os.open(self.dir / qid, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            self._fds[qid] = fd
        return fd

    def record(self, qid: str, index: int, reply: str) -> None:
        """Delivery ``index`` of message ``qid`` was accepted with ``reply``."""
        line = f"{index}\t{' '.join(reply.split())[:300]}\n".encode("utf-8", "replace")
        os.write(self._fd(qid), line)

    def apply(self, env: Envelope) -> int:
        """Mark the journalled deliveries of ``env`` sent; how many it changed."""
        try:
            data = (self.dir / env.id).read_bytes()
        except FileNotFoundError:
            return 0
        deliveries = env.deliveries
        changed = 0
        for line in data.decode("utf-8", "replace").splitlines():
            index, _, reply = line.partition("\t")
            if not index.isdigit() or int(index) >= len(deliveries):
                continue  # a torn last line, or an envelope of another shape
            d = deliveries[int(index)]
            if d.final:
                continue
            d.state = RcptState.SENT
            d.tries += 1
            d.last_error = reply or "250 sent (recorded before a restart)"
            d.status = "2.0.0"
            changed += 1
        return changed

    def clear(self, qid: str) -> None:
        """The envelope on disk now holds what the journal said (or the message is gone)."""
        fd = self._fds.pop(qid, None)
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir / qid)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
