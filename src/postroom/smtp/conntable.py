"""Concurrent connections counted across the intake processes of one server: one small
shared-memory table, ``state/connections``.

Several intake processes accept on one listening socket and the kernel decides which
process gets a client, so a count kept in one process's memory does not see the others.
Dividing each limit by the number of processes does not work either: a client's
connections need not be spread evenly (one process may get three of a client's four), so
it would be refused while under its limit, and a small limit cannot be divided at all. So
the processes share one table: a record per key (a client on a listener, or a listener's
total) holding one counter *per process*, in a file every process maps.

    offset 0     lock bytes: process column c is owned by whoever holds a POSIX record
                 lock on byte c (the kernel frees it when the process dies)
    offset 64    the owning PID of each column, u32 (for the operator; 0 = never used)
    offset 512   SLOTS records: key (u64, 0 = free), then COLUMNS u16 counters

A process takes the first column it can lock and zeroes it (a dead owner's counts go with
it), and only ever writes its own column. Check-and-count is one step under ``flock`` on
the file, so two processes cannot both admit a client's last allowed connection: the
limits are exact. A count a dead process left behind is not believed: when a key is at
its limit, the columns whose owner no longer holds its lock are zeroed first (at most once
a second), so a crash never leaves clients refused. The file is allocated on disk when it
is made (``posix_fallocate``): writing to a mapped page of a full file system would
otherwise kill the process with SIGBUS.

Why not the ``SharedLimits`` byte locks of ``postroom.queue.limits`` (one locked byte per
connection)? They are exact and crash-safe too, but a key has at most 256 bytes, finding a
free byte costs one ``fcntl`` per held one (a listener total of thousands would cost
thousands of system calls per connection), and every lock of every process sits in the
kernel's list for the file, which each lock operation walks. Here a connection costs two
``flock`` calls and a few reads of mapped memory (docs/performance.md).

Bounds: COLUMNS processes (more fall back to counting in their own memory, with a warning
in the log), SLOTS keys at once; a key that finds no free slot in PROBES tries is not
counted (admitted), since SLOTS is far above any sane connection limit's distinct clients.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("postroom.smtp")

COLUMNS = 64
SLOTS = 8192
PROBES = 16
_PIDS = 64
_RECORDS = 512
_REC = struct.Struct(f"<Q{COLUMNS}H")
_KEY = struct.Struct("<Q")
_COUNT = struct.Struct("<H")
_PID = struct.Struct("<I")
SIZE = _RECORDS + SLOTS * _REC.size
_SWEEP_EVERY = 1.0
UNCOUNTED = -1  # the offset of a key that found no slot


def key_of(text: str) -> int:
    """A table key: 8 bytes of a hash, never 0 (0 marks a free record)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest()) or 1


class LocalTable:
    """The same counting in this process's memory only: the fallback when the shared
    table cannot be used (no free column, or its file cannot be made)."""

    shared = False

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def acquire(self, wanted: Sequence[tuple[int, int]]) -> list[int] | int:
        for i, (key, limit) in enumerate(wanted):
            if self._counts.get(key, 0) >= limit:
                return i
        for key, _ in wanted:
            self._counts[key] = self._counts.get(key, 0) + 1
        return [key for key, _ in wanted]

    def release(self, held: Sequence[int]) -> None:
        for key in held:
            left = self._counts.get(key, 0) - 1
            if left > 0:
                self._counts[key] = left
            else:
                self._counts.pop(key, None)

    def count(self, key: int) -> int:
        return self._counts.get(key, 0)


class ConnectionTable:
    """The shared table (see the module docstring). One per file per process: use
    ``open_table``, since closing any descriptor of the file would drop this process's
    record locks, its column among them."""

    shared = True

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            os.posix_fallocate(fd, 0, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._swept = 0.0
        with self._locked():
            column = self._take_column()
        if column is None:
            self._map.close()
            os.close(fd)
            raise OSError(f"{path}: all {COLUMNS} process columns are in use")
        self.column = column
        self._own = 8 + 2 * column

    # -- counting -------------------------------------------------------------------------

    def acquire(self, wanted: Sequence[tuple[int, int]]) -> list[int] | int:
        """Count one connection under every (key, limit) of ``wanted``, or none of them:
        returns the records' offsets (to ``release``), or the index of the first key at
        its limit."""
        with self._locked():
            offsets = []
            for i, (key, limit) in enumerate(wanted):
                offset, total = self._find(key)
                if total >= limit and self._sweep():
                    offset, total = self._find(key)
                if total >= limit:
                    return i
                offsets.append(offset)
            for (key, _), offset in zip(wanted, offsets, strict=True):
                if offset == UNCOUNTED:
                    continue
                _KEY.pack_into(self._map, offset, key)
                mine = offset + self._own
                (n,) = _COUNT.unpack_from(self._map, mine)
                _COUNT.pack_into(self._map, mine, min(n + 1, 0xFFFF))
            return offsets

    def release(self, held: Sequence[int]) -> None:
        with self._locked():
            for offset in held:
                if offset == UNCOUNTED:
                    continue
                mine = offset + self._own
                (n,) = _COUNT.unpack_from(self._map, mine)
                if n:
                    _COUNT.pack_into(self._map, mine, n - 1)
                if not any(_REC.unpack_from(self._map, offset)[1:]):
                    _KEY.pack_into(self._map, offset, 0)

    def count(self, key: int) -> int:
        with self._locked():
            return self._find(key)[1]

    def _find(self, key: int) -> tuple[int, int]:
        """(offset of the key's record, its count over all processes); a free record's
        offset (count 0) when the key has none, UNCOUNTED when no slot is free."""
        first = key % SLOTS
        offsets = [_RECORDS + ((first + i) % SLOTS) * _REC.size for i in range(PROBES)]
        free = UNCOUNTED
        for offset in offsets:  # the keys only: a count is summed for one record
            (found,) = _KEY.unpack_from(self._map, offset)
            if found == key:
                return offset, sum(_REC.unpack_from(self._map, offset)[1:])
            if found == 0 and free == UNCOUNTED:
                free = offset
        if free == UNCOUNTED:  # a record whose counts a dead process's sweep zeroed
            free = next((o for o in offsets if not any(_REC.unpack_from(self._map, o)[1:])),
                        UNCOUNTED)
        return free, 0

    # -- processes ------------------------------------------------------------------------

    def _take_column(self) -> int | None:
        for column in range(COLUMNS):
            if self._try_lock(column):
                self._clear(column)
                _PID.pack_into(self._map, _PIDS + 4 * column, os.getpid())
                return column
        return None

    def _try_lock(self, column: int) -> bool:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, column)
        except OSError:
            return False
        return True

    def _sweep(self) -> bool:
        """Zero the columns of processes that died; True if there was one."""
        now = time.monotonic()
        if now - self._swept < _SWEEP_EVERY:
            return False
        self._swept = now
        found = False
        for column in range(COLUMNS):
            if column == self.column or not _PID.unpack_from(self._map, _PIDS + 4 * column)[0]:
                continue
            if self._try_lock(column):  # its owner is gone
                self._clear(column)
                _PID.pack_into(self._map, _PIDS + 4 * column, 0)
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, column)
                found = True
        return found

    def _clear(self, column: int) -> None:
        at = _RECORDS + 8 + 2 * column
        for slot in range(SLOTS):
            _COUNT.pack_into(self._map, at + slot * _REC.size, 0)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


_open: dict[tuple[int, str], ConnectionTable | LocalTable] = {}


def open_table(path: Path) -> ConnectionTable | LocalTable:
    """This process's table at ``path`` (made once per process); a ``LocalTable`` with a
    warning in the log when the shared one cannot be used."""
    where = (os.getpid(), os.path.realpath(path))
    table = _open.get(where)
    if table is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            table = ConnectionTable(path)
        except OSError as e:
            log.warning("connection limits counted per process only: %s", e)
            table = LocalTable()
        _open[where] = table
    return table
