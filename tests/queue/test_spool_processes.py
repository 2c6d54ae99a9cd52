"""Several processes on one spool, and a writer killed with SIGKILL at a random moment."""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from pathlib import Path

import pytest

from postroom.queue import ids
from postroom.queue.spool import Spool
from tests.queue.helpers import child, files_under
from tests.queue.spool_child import message


def _parse(out: str) -> dict[str, int]:
    """``ID COUNTER`` lines -> {id: counter}; a torn last line is ignored."""
    found: dict[str, int] = {}
    for line in out.splitlines(keepends=True):
        if not line.endswith("\n"):
            continue
        qid, counter = line.split()
        assert qid not in found, f"{qid} printed twice"
        found[qid] = int(counter)
    return found


def _check_intact(spool: Spool, qid: str) -> tuple[str, int]:
    """The message's envelope parses and its bytes are what the writer derived from
    (tag, counter); returns (tag, counter)."""
    env = spool.load(qid)
    assert env.envid is not None
    tag, counter = env.envid.split(":")
    assert env.sender == f"s{counter}@{tag}.test"
    data = spool.read_message(qid)
    assert data == message(tag, int(counter)), f"{qid}: message bytes differ"
    assert env.size == len(data)
    return tag, int(counter)


def test_ids_unique_across_processes(root: Path, tmp_path: Path) -> None:
    """Four processes put into the same spool at the same moment."""
    Spool(root).close()
    start = tmp_path / "go"
    procs = [child("put", str(root), f"p{n}", "150", "10", str(start)) for n in range(4)]
    for p in procs:  # all four at the starting line
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    start.touch()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    per_proc = [_parse(out) for out in outs]
    assert [len(found) for found in per_proc] == [150] * 4
    all_ids = [qid for found in per_proc for qid in found]
    assert len(set(all_ids)) == 600
    assert all(ids.is_valid(q) and len(q) == ids.LENGTH for q in all_ids)
    # the processes really wrote at the same time (IDs say when)
    spans = sorted((min(ids.timestamp(q) for q in f), max(ids.timestamp(q) for q in f))
                   for f in per_proc)
    assert any(a[1] > b[0] for a, b in itertools.pairwise(spans))
    with Spool(root) as spool:
        assert spool.ids() == sorted(all_ids)
        for n, found in enumerate(per_proc):
            for qid, counter in found.items():
                assert _check_intact(spool, qid) == (f"p{n}", counter)
    assert files_under(root / "tmp") == []


@pytest.mark.parametrize("kill_after", [0, 1, 40, 300])
def test_kill_9_while_putting(root: Path, kill_after: int) -> None:
    """Every ID the writer printed (put returned) is queued and intact after SIGKILL; no
    half-written message is ever visible; recover() clears what was in flight."""
    Spool(root).close()
    proc = child("loop", str(root), "k", "16")
    assert proc.stdout is not None
    lines = []
    for _ in range(kill_after):
        lines.append(proc.stdout.readline())
    time.sleep(random.uniform(0, 0.05))  # land somewhere inside the next puts
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    printed = _parse("".join(lines) + rest)
    assert len(printed) >= kill_after

    with Spool(root) as spool:
        queued = spool.ids()
        assert set(printed) <= set(queued)
        for qid in queued:  # printed or not: whatever is visible is whole
            _check_intact(spool, qid)
        report = spool.recover()
        assert report.exclusive and report.corrupt == []
        assert files_under(root / "tmp") == []
        assert spool.ids() == queued
        for qid, counter in printed.items():
            assert _check_intact(spool, qid) == ("k", counter)


def test_kill_9_while_putting_updating_and_deleting(root: Path) -> None:
    """With deletes and updates going on, files are reused (free/): after SIGKILL every
    message whose put returned and that was not being deleted is intact, with its update
    if that returned, and nothing of another message leaks into it."""
    Spool(root).close()
    proc = child("churn", str(root), "c", "16")
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(600)]
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=60)
    events = [line.split() for line in ("".join(lines) + rest).splitlines(keepends=True)
              if line.endswith("\n")]  # a torn last line is ignored
    put = {e[1]: int(e[2]) for e in events if e[0] == "P"}
    updated = {e[1] for e in events if e[0] == "U"}
    deleting = {e[1] for e in events if e[0] == "d"}
    deleted = {e[1] for e in events if e[0] == "D"}
    assert len(deleted) > 50  # files were freed and reused while the child ran
    with Spool(root) as spool:
        assert spool.recover().corrupt == []
        queued = set(spool.ids())
        assert not queued & deleted
        assert set(put) - deleting <= queued
        for qid in queued:
            tag, counter = _check_intact(spool, qid)
            assert tag == "c"
            tries = spool.load(qid).recipients[0].deliveries[0].tries
            assert tries in (0, counter)
            if qid in updated:
                assert tries == counter
        assert files_under(root / "tmp") == []
