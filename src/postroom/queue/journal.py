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

The fan-out record (``FanoutRecord``, ``sent/ID.fanout``) is the same idea one level up:
the list engine queues a post to a big list as many messages, while the post's own
delivery to the list is still in its round. Each message it queued is recorded at once
(the list, the last member address in it, its ID); when the post is taken up again after
a crash, the engine queues only the members after the last recorded one, so nobody gets
the post twice and nobody is left out. The record stays until the post itself has left
the queue: a post whose list delivery was deferred half-way (a full disk) goes on from
the same place at its retry.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import NamedTuple

from postroom.envelope import Envelope
from postroom.queue.layout import ACTIVE, ENV_SUFFIX, HOLD
from postroom.types import RcptState

SENT = "sent"
FANOUT_SUFFIX = ".fanout"


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
        """The envelope on disk now holds what the journal said (or the message is gone).
        A fan-out record of the message goes once the message has left the queue."""
        fd = self._fds.pop(qid, None)
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir / qid)
        record = self.dir / (qid + FANOUT_SUFFIX)
        if record.exists() and not _queued(self.dir.parent, qid):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(record)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _queued(root: Path, qid: str) -> bool:
    return any((root / state / (qid + ENV_SUFFIX)).exists() for state in (ACTIVE, HOLD))


class Progress(NamedTuple):
    """How far the fan-out of one post to one list got."""

    after: str = ""        # the last member address queued ("": none yet)
    messages: int = 0      # queued messages
    members: int = 0       # members in them


class FanoutRecord:
    """``sent/ID.fanout``: the messages the list engine queued for post ``ID`` (a line
    each: list address, last member address, member count, queue ID), appended with
    ``write`` as each becomes durable: like the sent journal, it survives the death of
    the process, not of the machine (then members after the last line that reached the
    disk may get the post twice, never not at all)."""

    def __init__(self, root: str | os.PathLike[str], post_id: str) -> None:
        self.path = Path(root) / SENT / (post_id + FANOUT_SUFFIX)

    def progress(self, list_address: str) -> Progress:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Progress()
        after, messages, members = "", 0, 0
        for line in data.decode("utf-8", "surrogateescape").split("\n"):
            fields = line.split("\t")
            if len(fields) != 4 or fields[0] != list_address or not fields[2].isdigit():
                continue  # a torn last line, or another list's
            after = max(after, fields[1])
            messages += 1
            members += int(fields[2])
        return Progress(after, messages, members)

    def add(self, list_address: str, last_member: str, members: int, qid: str) -> None:
        """A message for ``members`` members up to ``last_member`` is queued as ``qid``."""
        line = f"{list_address}\t{last_member}\t{members}\t{qid}\n"
        self.path.parent.mkdir(exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
