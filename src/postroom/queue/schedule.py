"""When to try a deferred delivery again: exponential backoff with jitter; and ``due_now``,
what ``queue flush`` does to an envelope.

The n-th retry waits ``initial * 2**(n-1)`` seconds, capped at ``maximum`` (defaults 5 min
doubling to 1 h), give or take 10% so that mail deferred together (a restart, an outage
at one destination) is not all retried in the same second (chasquid's ``nextDelay``).
"""

from __future__ import annotations

import random

from postroom.envelope import Envelope, RcptState


def retry_delay(tries: int, initial: float, maximum: float,
                jitter: float = 0.1, rng: random.Random | None = None) -> float:
    base = min(maximum, initial * 2 ** max(0, tries - 1))
    r: float = (rng or random).uniform(-jitter, jitter)
    return float(max(1.0, base * (1 + r)))


def due_now(envelope: Envelope) -> bool:
    """``queue flush``: make every deferred delivery of ``envelope`` due now; whether any
    was (the change ``Spool.modify`` stores)."""
    due = [d for d in envelope.deliveries
           if d.state == RcptState.DEFERRED and d.next_attempt != 0]
    for d in due:
        d.next_attempt = 0.0
    return bool(due)
