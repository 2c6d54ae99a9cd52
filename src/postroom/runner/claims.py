"""Which process is delivering which message, across the processes of one server.

A claim is a one-slot ``SharedLimits`` per message ID, in ``queue/claims``: locked while a
runner works on the message, freed by the kernel when the process dies. (The spool's own
flock on the message file is for short changes and must stay free meanwhile, so a claim
cannot be a flock on that file.) Two IDs that hash alike only make one of them wait.

Ownership of a fresh message is stated, not guessed: whoever puts a message into the
queue *reserves* its claim before the message becomes visible, and keeps it until its own
first attempt. Another process scanning the spool sees the claim and leaves the message
alone; if the owner dies the kernel frees the claim and the message is taken over at once.
"""

from __future__ import annotations

import os

from postroom.queue.limits import SharedLimits, slots_of


class Claims:
    def __init__(self, queue_dir: os.PathLike[str] | str) -> None:
        self._locks = SharedLimits(os.path.join(queue_dir, "claims"))
        self._held: dict[str, int] = {}
        self.reserved: set[str] = set()   # claimed for a message not yet handed over

    def take(self, qid: str) -> bool:
        """Claim ``qid`` for a delivery round (True if this process already holds it)."""
        if qid in self._held:
            return True
        offset = self._locks.try_acquire(slots_of(qid), 1)
        if offset is None:
            return False
        self._held[qid] = offset
        return True

    def reserve(self, qid: str) -> bool:
        """Claim a message about to be queued, until ``release``; False when the slot is
        busy (a hash twin being delivered): the message is then read back from disk."""
        if qid in self._held or not self.take(qid):
            return False
        self.reserved.add(qid)
        return True

    def release(self, qid: str) -> None:
        self.reserved.discard(qid)
        offset = self._held.pop(qid, None)
        if offset is not None:
            self._locks.release(offset)

    def close(self) -> None:
        self._locks.close()
