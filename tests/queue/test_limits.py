"""Delivery concurrency limits shared by the processes of one server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from postroom.queue.limits import SharedLimits, slots_of

CHILD = """
import sys
from postroom.queue.limits import SharedLimits, slots_of
limits = SharedLimits(sys.argv[1])
held = [limits.try_acquire(slots_of("esmtp:example.org"), 2) for _ in range(2)]
assert None not in held, held
print("held", flush=True)
sys.stdin.read()
"""


async def test_limit_inside_one_process(tmp_path: Path) -> None:
    limits = SharedLimits(tmp_path / "limits")
    a = await limits.acquire("esmtp:example.org", 2)
    b = await limits.acquire("esmtp:example.org", 2)
    assert a != b
    assert limits.try_acquire(slots_of("esmtp:example.org"), 2) is None
    assert limits.try_acquire(slots_of("esmtp:example.net"), 2) is not None  # another key
    waiting = asyncio.ensure_future(limits.acquire("esmtp:example.org", 2))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    limits.release(a)
    assert await asyncio.wait_for(waiting, 2) == a
    limits.close()


async def test_limit_across_processes_and_freed_when_one_dies(tmp_path: Path) -> None:
    path = tmp_path / "limits"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        limits = SharedLimits(path)
        with pytest.raises(TimeoutError):  # the other process holds both slots
            await asyncio.wait_for(limits.acquire("esmtp:example.org", 2), 0.3)
        child.kill()  # no release: the kernel drops a dead process's locks
        child.wait()
        await asyncio.wait_for(limits.acquire("esmtp:example.org", 2), 2)
        limits.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
