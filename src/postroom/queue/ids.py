"""Queue IDs: short, unique, sortable by arrival time.

An ID is 13 characters of ``[0-9A-Za-z]`` (base 62, digits < capitals < small letters, so
plain string order is numeric order)::

    8DtEjreMK 02JV
    │         └── 4 chars: the process ID (8897)
    └── 9 chars: microseconds since the epoch (1795639351.098288)

- The first 9 characters are the time in microseconds since 1970, which lasts until the year
  2398. Within one process the value is strictly increasing (``max(now, last + 1)``), so two
  IDs from one process never collide, however fast they are made and even if the clock steps
  back while the process runs.
- The last 4 characters are the process ID (Linux ``pid_max`` is at most 2**22, and
  62**4 > 14 million), so processes writing the same spool at the same moment differ there.
- Across restarts the time has moved on. The one case left, a process that gets the PID of an
  earlier one *and* a clock that went back to the same microsecond, is caught by the spool,
  which creates each ID's message file exclusively and checks it is not queued already.

Like Postfix long queue IDs (time + microseconds + inode), the ID says when the message
arrived: ``timestamp(id)`` decodes it, and ``sorted(ids)`` is arrival order.
"""

from __future__ import annotations

import os
import re
import threading
import time

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TIME_CHARS = 9
PID_CHARS = 4
LENGTH = TIME_CHARS + PID_CHARS

# What the spool accepts as an ID: any base-62 word of a sane length. Stricter than needed
# for our own IDs (which are LENGTH long) so that IDs never contain path characters.
_VALID = re.compile(r"[0-9A-Za-z]{6,32}")
_INDEX = {c: i for i, c in enumerate(ALPHABET)}

_lock = threading.Lock()
_last = 0


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        chars.append(ALPHABET[digit])
    if value:
        raise ValueError(f"value does not fit in {width} base-62 digits")
    return "".join(reversed(chars))


def _decode(text: str) -> int:
    value = 0
    for c in text:
        value = value * 62 + _INDEX[c]
    return value


def new_id() -> str:
    """A new queue ID; thread-safe and unique across the processes of one host."""
    global _last
    now = time.time_ns() // 1000
    with _lock:
        _last = max(now, _last + 1)
        micros = _last
    return _encode(micros, TIME_CHARS) + _encode(os.getpid() % 62**PID_CHARS, PID_CHARS)


def is_valid(qid: str) -> bool:
    """True for a string that can name a queued message (and so is safe in a path)."""
    return isinstance(qid, str) and _VALID.fullmatch(qid) is not None


def timestamp(qid: str) -> float:
    """The arrival time encoded in one of our IDs, in seconds since the epoch."""
    if len(qid) != LENGTH or not is_valid(qid):
        raise ValueError(f"{qid!r} is not a postroom queue ID")
    return _decode(qid[:TIME_CHARS]) / 1_000_000
