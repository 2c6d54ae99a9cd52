"""Checking SMTP AUTH credentials without blocking the event loop, with a per-client
limit on failures (a password-guessing client is paused, not served)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

AUTH_PAUSED = "454 4.7.0 Too many failed authentication attempts; try again later"


@dataclass
class FailureLimiter:
    limit: int
    pause: float
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def paused(self, client: str) -> bool:
        times = self._failures.get(client)
        if not times:
            return False
        now = self.clock()
        times[:] = [t for t in times if now - t < self.pause]
        return len(times) >= self.limit

    def failed(self, client: str) -> None:
        self._failures.setdefault(client, []).append(self.clock())
        if len(self._failures) > 10000:  # bound memory under a spray from many addresses
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


class Authenticator:
    """Verifies a login against the store in a worker thread (argon2 costs ~50 ms)."""

    def __init__(self, site: object) -> None:
        self.site = site

    async def verify(self, login: str, password: str) -> bool:
        from postroom.store.users import check_password

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, check_password, self.site, login, password)

    async def addresses(self, login: str) -> list[str]:
        from postroom.store.users import addresses_of

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, addresses_of, self.site, login)
