"""Work ``serve`` does on a schedule: a task runs on time and on demand, a failing task is
recorded and retried on schedule without stopping the server, and the address export is
written at start and again when a list is created."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import trustme

from postroom.runtime import Reloader, Runtime
from postroom.serve.periodic import STATE_NAME, PeriodicService, PeriodicTask, read_state
from tests.conftest import run
from tests.server import Server, configure_site


async def test_tasks_run_on_schedule_and_on_demand_and_failures_are_recorded(
        example_site: Path) -> None:
    reloader = Reloader(example_site)
    calls: list[str] = []

    def tick(rt: Runtime) -> str:
        calls.append("tick")
        return f"ticked for {rt.site.profile.site.hostname}"

    def broken(rt: Runtime) -> str:
        calls.append("broken")
        raise OSError("mirror /srv/backup is not mounted")

    service = PeriodicService(reloader, [
        PeriodicTask("tick", lambda rt: 0.2, tick),
        PeriodicTask("broken", lambda rt: 0.3, broken, at_start=True),
        PeriodicTask("off", lambda rt: None, tick, at_start=True),
    ])
    await service.start()
    try:
        await asyncio.sleep(0.05)
        assert calls == ["broken"]  # at_start, before tick's first interval
        await asyncio.sleep(0.75)
        assert calls.count("tick") >= 2 and calls.count("broken") >= 2  # failure: retried
        reply = await service.run_now("tick")
    finally:
        await service.stop()
    assert reply["ok"] is True and reply["said"] == "ticked for mail.inf.example.ac.uk"
    state = read_state(reloader.current.site.state_dir)
    assert set(state) == {"tick", "broken"}  # "off" never ran
    assert state["broken"]["ok"] is False
    assert state["broken"]["said"] == "OSError: mirror /srv/backup is not mounted"
    assert state["broken"]["last_ok"] is None
    assert state["tick"]["last_ok"] == pytest.approx(time.time(), abs=5)


async def test_a_stop_waits_for_a_running_task_and_restart_reads_the_state(
        example_site: Path) -> None:
    reloader = Reloader(example_site)
    done: list[float] = []

    def slow(rt: Runtime) -> str:
        time.sleep(0.3)
        done.append(time.monotonic())
        return "slow done"

    service = PeriodicService(reloader, [PeriodicTask("slow", lambda rt: 60.0, slow,
                                                      at_start=True)])
    await service.start()
    await asyncio.sleep(0.05)
    await service.stop()
    assert len(done) == 1  # the stop waited for it; nothing was cut off half-way
    again = PeriodicService(reloader, [PeriodicTask("slow", lambda rt: 60.0, slow)])
    assert again.state["slow"]["said"] == "slow done"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_serve_exports_at_start_and_when_a_list_is_created(example_site: Path,
                                                           ca: trustme.CA) -> None:
    configure_site(example_site, ca)
    exported = example_site / "export/valid-addresses.txt"
    server = Server(example_site, workers=2).start()
    try:
        deadline = time.monotonic() + 15
        while not exported.exists():
            assert time.monotonic() < deadline, "no export after start"
            time.sleep(0.05)
        assert "neilb@inf.example.ac.uk" in exported.read_text().split()
        assert "seminar@inf.example.ac.uk" not in exported.read_text().split()
        r = run("lists", "create", "seminar", site=example_site)
        assert r.returncode == 0, r.stderr
        while "seminar@inf.example.ac.uk" not in exported.read_text().split():
            assert time.monotonic() < deadline, "the new list never reached the export"
            time.sleep(0.05)
        assert "seminar-request@inf.example.ac.uk" in exported.read_text().split()
        state = json.loads((example_site / "state" / STATE_NAME).read_text())
        assert state["export"]["ok"] is True
        assert state["export"]["said"].startswith("exported ")
        r = run("tasks", site=example_site)
        assert r.returncode == 0, r.stderr
        (line,) = [x for x in r.stdout.splitlines() if x.startswith("export ")]
        assert "3600s" in line and " ok " in line and "exported " in line
        r = run("tasks", "run", "export", site=example_site)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("export: done: exported ")
        r = run("tasks", "run", "nosuch", site=example_site)
        assert r.returncode == 70 and "no periodic task 'nosuch'" in r.stderr
    finally:
        assert server.stop() == 0
    assert "export: done: exported " in server.log()
