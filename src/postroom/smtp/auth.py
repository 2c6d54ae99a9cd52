"""Checking SMTP AUTH credentials without blocking the event loop, with a per-client
limit on failures shared by all intake processes (a password-guessing client is paused,
not served)."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import ipaddress
import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiosmtpd.smtp import Session

    from postroom.site import Site
    from postroom.store.users import LoginCheck

AUTH_PAUSED = "454 4.7.0 Too many failed authentication attempts; try again later"


def login_of(session: Session) -> str:
    """The user a session authenticated as, or "" before a successful AUTH.

    It is read from ``session.auth_data`` (a ``LoginPassword`` from ``Handler.authenticate``).
    aiosmtpd's ``Session.login_data`` is deprecated and logs a warning on every use, and
    postroom's SMTP sessions no longer set it."""
    if not session.authenticated or session.auth_data is None:
        return ""
    login = getattr(session.auth_data, "login", session.auth_data)
    return login.decode("utf-8", "replace") if isinstance(login, bytes) else str(login)


class FailureLimiter:
    """Failed AUTH attempts per client address (per /64 for IPv6), shared by every intake
    process of a server
    through one small file (``state/auth-failures``): ``limit`` failures within ``pause``
    seconds of the first pause that address until those seconds have passed.

    The file is a table of SLOTS fixed-size records (key, window start, count), found by a
    hash of the address with a few probes, read and written under ``flock``. A spray from
    more addresses than slots evicts the oldest windows, so memory and disk stay bounded."""

    SLOTS = 8192
    PROBES = 8
    _RECORD = struct.Struct("<QdI4x")  # address hash (0 = free), window start, failures

    def __init__(self, limit: int, pause: float, path: os.PathLike[str] | str,
                 clock: Callable[[], float] = time.time) -> None:
        self.limit, self.pause, self.clock = limit, pause, clock
        self.path = os.fspath(path)
        self._fd = -1
        self._map: mmap.mmap | None = None  # kept: mapping per call costs more than the rest

    def paused(self, client: str) -> bool:
        with self._table() as table:
            slot = self._find(table, _key(client), claim=False)
            if slot is None:
                return False
            _, start, count = self._RECORD.unpack_from(table, slot)
            return bool(count >= self.limit and self.clock() - start < self.pause)

    def failed(self, client: str) -> None:
        self.hit(client)

    def hit(self, client: str) -> int:
        """Count one event of ``client`` (a connection, for the connection rate) and
        return how many there have been in its window, this one included."""
        key = _key(client)
        with self._table() as table:
            slot = self._find(table, key, claim=True)
            assert slot is not None
            found, start, count = self._RECORD.unpack_from(table, slot)
            now = self.clock()
            if found != key or now - start >= self.pause:
                start, count = now, 0
            self._RECORD.pack_into(table, slot, key, start, count + 1)
            return int(count + 1)

    def succeeded(self, client: str) -> None:
        with self._table() as table:
            slot = self._find(table, _key(client), claim=False)
            if slot is not None:
                self._RECORD.pack_into(table, slot, 0, 0.0, 0)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _find(self, table: mmap.mmap, key: int, *, claim: bool) -> int | None:
        """The slot holding ``key``; with ``claim``, else a free or expired one, else the
        one whose window is oldest."""
        size = self._RECORD.size
        first = key % self.SLOTS
        spare, spare_start = None, float("inf")
        now = self.clock()
        for i in range(self.PROBES):
            slot = ((first + i) % self.SLOTS) * size
            found, start, _ = self._RECORD.unpack_from(table, slot)
            if found == key:
                return slot
            if not claim:
                continue
            if found == 0 or now - start >= self.pause:
                start = -1.0  # free: better than any live window
            if start < spare_start:
                spare, spare_start = slot, start
        return spare

    @contextmanager
    def _table(self) -> Iterator[mmap.mmap]:
        if self._fd < 0:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            size = self.SLOTS * self._RECORD.size
            try:
                if os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)
                # blocks on disk now: a write to a mapped hole of a full file system
                # would kill the process with SIGBUS
                os.posix_fallocate(fd, 0, size)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        if self._map is None:
            self._map = mmap.mmap(self._fd, self.SLOTS * self._RECORD.size)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield self._map
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


def _key(client: str) -> int:
    return int.from_bytes(hashlib.blake2b(subject_of(client).encode(), digest_size=8).digest()) or 1


def subject_of(client: str) -> str:
    """Who is counted: an IPv4 address, or the /64 an IPv6 address is in (one host there
    has a whole /64 to choose its addresses from)."""
    try:
        addr = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return client


class Authenticator:
    """Verifies a login against the store in a worker thread (argon2 costs ~50 ms)."""

    def __init__(self, site: Site) -> None:
        self.site = site

    async def verify(self, login: str, password: str) -> LoginCheck:
        """OK, FAILED, or DISABLED (the right password of a disabled user: for the log;
        the client hears the same 535 as for a wrong password)."""
        from postroom.store.users import verify_login

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, verify_login, self.site, login, password)

    async def addresses(self, login: str) -> list[str]:
        from postroom.store.users import addresses_of

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, addresses_of, self.site, login)
