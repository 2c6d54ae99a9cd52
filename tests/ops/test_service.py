"""Service control: ``serve`` tells systemd it is ready and alive over a notify socket the
test binds (``READY=1`` once it takes mail, ``WATCHDOG=1`` at half the watchdog interval,
``STOPPING=1`` when it drains); the unit file asks for exactly that; ``postroom status``
names the last export and the last backup."""

from __future__ import annotations

import json
import os
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import ROOT, run
from tests.ops.conftest import ask
from tests.server import INBOUND_IP, Server, configure_site


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    name = f"postroom-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(20)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    yield sock
    sock.close()


def messages(sock: socket.socket, until: str, timeout: float = 20) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(until in m for m in got):
        assert time.monotonic() < deadline, f"no {until} in {got}"
        got.append(sock.recv(4096).decode())
    return got


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_notifies_systemd_ready_alive_and_stopping(
        example_site: Path, ca: trustme.CA, notify_socket: socket.socket,
        workers: int) -> None:
    configure_site(example_site, ca)
    server = Server(example_site, workers=workers).start()
    try:
        first = messages(notify_socket, "READY=1")
        assert first[-1].startswith("READY=1\n") and f"MAINPID={server.proc.pid}" in first[-1]
        # ready means ready: the mx listener takes a connection at once
        with smtplib.SMTP("127.0.0.1", server.ports["mx"], source_address=(INBOUND_IP, 0),
                          timeout=10) as c:
            assert c.noop()[0] == 250
        start = time.monotonic()
        pings = [m for m in messages(notify_socket, "WATCHDOG=1") if m == "WATCHDOG=1"]
        pings += [m for m in messages(notify_socket, "WATCHDOG=1") if m == "WATCHDOG=1"]
        assert len(pings) >= 2 and time.monotonic() - start < 2
        assert ask(example_site, "reload")["ok"] is True
        assert any("STATUS=reloaded" in m for m in messages(notify_socket, "STATUS=reloaded"))
    finally:
        assert server.stop() == 0
    assert any(m.startswith("STOPPING=1") for m in messages(notify_socket, "STOPPING=1"))


def test_the_unit_file_asks_for_notify_watchdog_reload_and_drain() -> None:
    unit = (ROOT / "contrib" / "systemd" / "postroom.service").read_text()
    keys = dict(line.split("=", 1) for line in unit.splitlines()
                if "=" in line and not line.startswith("#"))
    assert keys["Type"] == "notify" and keys["NotifyAccess"] == "main"
    assert int(keys["WatchdogSec"]) > 0
    assert keys["ExecStart"].endswith("postroom serve")
    assert keys["ExecReload"].endswith("postroom reload")
    assert keys["KillSignal"] == "SIGTERM" and keys["KillMode"] == "mixed"
    assert int(keys["TimeoutStopSec"]) > 35  # longer than the master's drain


def test_status_names_the_last_export_and_backup(example_site: Path, ca: trustme.CA,
                                                 tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    configure_site(example_site, ca, extra=f'\n[backup]\ndest = "{dest}"\n')
    before = run("status", site=example_site)
    assert "last export: none recorded" in before.stdout
    assert "last backup: none recorded" in before.stdout
    server = Server(example_site, workers=1).start()
    try:
        assert ask(example_site, "run", "backup")["ok"] is True
        dest.rename(tmp_path / "moved")
        dest.write_text("a file where the backups were")  # the next backup fails
        assert ask(example_site, "run", "backup")["ok"] is False
        ask(example_site, "run", "export")
        out = run("status", site=example_site).stdout
    finally:
        server.stop()
    assert "last export: " in out and ", ok: exported " in out
    line = next(x for x in out.splitlines() if x.startswith("last backup: "))
    assert "FAILED: " in line and "last good " in line
    info = json.loads(run("status", "--json", site=example_site).stdout)
    assert info["last_export"]["ok"] is True
    assert info["last_backup"]["ok"] is False and info["last_backup"]["last_ok"]


async def test_a_stop_while_a_task_runs_ends_serve_at_once(example_site: Path) -> None:
    """A backup or an export running when SIGTERM comes must not keep serve up until the
    next task is due (it waited for the longest interval, an hour)."""
    import asyncio

    from postroom.runtime import Reloader, Runtime
    from postroom.serve.periodic import PeriodicService, PeriodicTask

    def slow(rt: Runtime) -> str:
        time.sleep(0.3)
        return "done"

    service = PeriodicService(Reloader(example_site),
                              [PeriodicTask("slow", lambda rt: 3600.0, slow, at_start=True)])
    await service.start()
    await asyncio.sleep(0.05)
    start = time.monotonic()
    await asyncio.wait_for(service.stop(), 10)
    assert time.monotonic() - start < 2
