"""The AUTH failure limit, shared by every intake process through one file."""

from __future__ import annotations

from pathlib import Path

from postroom.smtp.auth import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_limit_pause_and_success(tmp_path: Path) -> None:
    clock = Clock()
    lim = FailureLimiter(3, 60, tmp_path / "state/auth-failures", clock)
    for _ in range(2):
        lim.failed("192.0.2.1")
    assert not lim.paused("192.0.2.1")
    lim.failed("192.0.2.1")
    assert lim.paused("192.0.2.1")
    assert not lim.paused("192.0.2.2")  # per address
    clock.now += 59
    assert lim.paused("192.0.2.1")
    clock.now += 2  # the window has passed
    assert not lim.paused("192.0.2.1")
    lim.failed("192.0.2.1")
    assert not lim.paused("192.0.2.1")  # a new window, one failure in it
    lim.failed("192.0.2.1")
    lim.succeeded("192.0.2.1")
    lim.failed("192.0.2.1")
    assert not lim.paused("192.0.2.1")  # success cleared the count


def test_two_processes_share_the_count(tmp_path: Path) -> None:
    path = tmp_path / "auth-failures"
    clock = Clock()
    one, two = FailureLimiter(4, 60, path, clock), FailureLimiter(4, 60, path, clock)
    for lim in (one, two, one, two):
        assert not lim.paused("198.51.100.7")
        lim.failed("198.51.100.7")
    assert one.paused("198.51.100.7") and two.paused("198.51.100.7")


def test_a_spray_stays_bounded_and_keeps_recent_offenders(tmp_path: Path) -> None:
    path = tmp_path / "auth-failures"
    clock = Clock()
    lim = FailureLimiter(2, 60, path, clock)
    lim.failed("203.0.113.9")
    lim.failed("203.0.113.9")
    for i in range(3 * FailureLimiter.SLOTS):
        clock.now += 0.001
        lim.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert path.stat().st_size == FailureLimiter.SLOTS * 24
    clock.now += 1
    fresh = FailureLimiter(2, 60, path, clock)
    fresh.failed("10.200.0.1")
    fresh.failed("10.200.0.1")
    assert fresh.paused("10.200.0.1")


def test_ipv6_counts_per_64(tmp_path: Path) -> None:
    lim = FailureLimiter(2, 60, tmp_path / "auth-failures", Clock())
    lim.failed("2001:db8:1:2::1")
    lim.failed("2001:db8:1:2:ffff::9")  # another address, same /64
    assert lim.paused("2001:db8:1:2::77")
    assert not lim.paused("2001:db8:1:3::1")
    lim.failed("::ffff:192.0.2.1")
    lim.failed("192.0.2.1")  # the same IPv4 client, mapped or not
    assert lim.paused("192.0.2.1")
