"""How the queue stands: how many messages are deferred (tried, not yet delivered) and
since when the oldest of them waits. Read from the envelopes in ``queue/active/``, so it
works with or without a running server; ``postroom check`` and the alerts use it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from postroom.queue.spool import ACTIVE, CORRUPT, ENV_SUFFIX, parse_envelope


@dataclass(frozen=True, slots=True)
class Backlog:
    queued: int          # messages in active/
    deferred: int        # of them, with a delivery tried and not final
    oldest: float | None  # arrival of the oldest deferred message (epoch seconds)
    corrupt: int         # envelopes set aside in corrupt/


def backlog(queue_dir: Path) -> Backlog:
    queued = deferred = 0
    oldest: float | None = None
    try:
        names = os.listdir(queue_dir / ACTIVE)
    except FileNotFoundError:
        names = []
    for name in names:
        if not name.endswith(ENV_SUFFIX):
            continue
        try:
            env = parse_envelope((queue_dir / ACTIVE / name).read_bytes())
        except (OSError, ValueError):
            continue  # finished meanwhile, or being rewritten
        queued += 1
        if any(d.tries > 0 and not d.final for d in env.deliveries):
            deferred += 1
            oldest = env.arrival if oldest is None else min(oldest, env.arrival)
    try:
        corrupt = len(os.listdir(queue_dir / CORRUPT))
    except FileNotFoundError:
        corrupt = 0
    return Backlog(queued, deferred, oldest, corrupt)
