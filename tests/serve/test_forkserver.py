"""The intake processes are forked by a fork server that has the server's code imported
(``postroom.forkserver``): they share its memory pages, a killed one is forked again,
a killed fork server leaves the master starting them with exec, and a killed master
takes the fork server and the intake processes with it."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from postroom.serve.services import WARM_AFTER
from tests.server import RELAY_IP, Server, children, cmdline, descendants, serving

MSG = b"From: a@inf.example.ac.uk\r\nTo: neilb@inf.example.ac.uk\r\nSubject: t\r\n\r\nhi\r\n"


@pytest.fixture
def server(example_site: Path) -> Iterator[Server]:
    with serving(example_site, trustme.CA(), workers=2) as s:
        wait_for(lambda: len(s.intake_pids()) == 2)
        yield s


def wait_for(check: Callable[[], object], timeout: float = 20,
             server: Server | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    log = server.log() if server is not None else ""
    raise AssertionError(f"not true within {timeout} s: {check.__name__}\n{log}")


def takes_mail(server: Server) -> None:
    """A message from an internal client gets its 250 (from whichever process takes it)."""
    for _ in range(4):  # the kernel may hand each connection to either process
        with smtplib.SMTP("127.0.0.1", server.ports["mx"], source_address=(RELAY_IP, 0),
                          timeout=20) as c:
            c.sendmail("a@inf.example.ac.uk", ["neilb@inf.example.ac.uk"], MSG)


def shared_anonymous_kib(pid: int) -> int:
    """Memory of ``pid`` that another process maps too and that no file holds: pages a
    fork shares (``Shared_Dirty``: pages written before the fork)."""
    return int(_field(f"/proc/{pid}/smaps_rollup", "Shared_Dirty").split()[0])


def test_intake_processes_are_forked_and_share_the_imported_code(server: Server) -> None:
    forks = server.fork_server()
    assert forks is not None
    intake = server.intake_pids()
    assert sorted(intake) == sorted(children(forks))  # none started with exec
    for pid in intake:
        # the modules imported before the fork: several MiB each, where a process started
        # with exec shares only the files it maps (a few KiB of dirty pages)
        assert shared_anonymous_kib(pid) > 4096, shared_anonymous_kib(pid)
    takes_mail(server)


def test_a_site_with_lists_shares_the_list_engine(server: Server) -> None:
    """The example site has lists: the list engine (SQLAlchemy, the email code) is
    imported before the fork, so no intake process holds a copy of its own. Imported in
    each, it costs some 25 MiB of private memory a process (40 MiB in all, against 14)."""
    time.sleep(WARM_AFTER + 2)  # when each process would have imported it itself
    for pid in server.intake_pids():
        private = int(_field(f"/proc/{pid}/smaps_rollup", "Private_Dirty").split()[0])
        assert private < 25 * 1024, f"intake process {pid}: {private} KiB private"


def test_clients_that_leave_without_reading_do_not_kill_intake_processes(
        server: Server) -> None:
    """A write to a connection the client closed is an error for that session, never a
    SIGPIPE that ends the process with every other session on it: an exec'd Python
    ignores SIGPIPE, and so must a forked one."""
    before = server.intake_pids()
    for _ in range(20):  # replies to 200 commands, written after the client has gone
        with socket.create_connection(("127.0.0.1", server.ports["mx"])) as s:
            s.sendall(b"EHLO x\r\n" * 200)
    time.sleep(1)
    assert "exited (" not in server.log()
    assert server.intake_pids() == before
    for pid in before:
        ignored = int(_status(pid, "SigIgn"), 16)
        assert ignored & (1 << (signal.SIGPIPE - 1)), "SIGPIPE must stay ignored"
    takes_mail(server)


def test_a_killed_intake_process_is_forked_again(server: Server) -> None:
    forks = server.fork_server()
    old = server.intake_pids()
    os.kill(old[0], signal.SIGKILL)
    wait_for(lambda: len(server.intake_pids()) == 2 and old[0] not in server.intake_pids())
    assert server.fork_server() == forks
    assert sorted(server.intake_pids()) == sorted(children(forks or 0))
    wait_for(lambda: f"intake process {old[0]} exited (-9); starting another" in server.log())
    takes_mail(server)


def test_without_the_fork_server_intake_processes_start_with_exec(server: Server) -> None:
    forks = server.fork_server()
    assert forks is not None
    old = server.intake_pids()
    os.kill(forks, signal.SIGKILL)  # its intake processes get SIGTERM and drain
    assert server.proc is not None
    master = server.proc.pid

    def replaced_by_exec() -> bool:
        pids = children(master)  # exec'd: the master's own children, python -m postroom.worker
        return (len(pids) == 2 and not set(old) & set(pids)
                and all("postroom.worker" in cmdline(p) for p in pids))

    wait_for(replaced_by_exec, server=server)
    assert server.fork_server() is None, server.log()
    wait_for(lambda: "starting it with exec" in server.log())
    takes_mail(server)


def test_a_killed_master_takes_the_fork_server_and_intake_processes(server: Server) -> None:
    assert server.proc is not None
    tree = [p for p in descendants(server.proc.pid)]
    assert len(tree) == 3  # the fork server and two intake processes
    os.kill(server.proc.pid, signal.SIGKILL)  # the master alone, not its group
    server.proc.wait()

    def gone() -> bool:
        return not any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p)
                       for p in tree)

    wait_for(gone, timeout=40)  # the intake processes drain first (SIGTERM)


def _field(path: str, name: str) -> str:
    """The value of the ``name:`` line of a /proc file (``status``, ``smaps_rollup``)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def _status(pid: int, name: str) -> str:
    return _field(f"/proc/{pid}/status", name)


def _state(pid: int) -> str:
    try:
        return _status(pid, "State")
    except (FileNotFoundError, KeyError):
        return "zombie"


def test_a_site_path_with_braces(example_site: Path, tmp_path: Path) -> None:
    """The fork server puts the listeners' descriptors into their own arguments only."""
    site = tmp_path / "mail{0}{x}" / "site"
    shutil.copytree(example_site, site, symlinks=True)
    with serving(site, trustme.CA(), workers=2) as s:
        wait_for(lambda: len(s.intake_pids()) == 2)
        forks = s.fork_server()
        assert forks is not None and sorted(s.intake_pids()) == sorted(children(forks))
        takes_mail(s)
