"""Connection limits (issue 10, item 2) through a real ``postroom serve``, with one intake
process and with two sharing the listening socket: what a client is answered, what the
mail log says, and that the server holds or refuses 10,000 idle connections cleanly.

Clients connect from loopback addresses of their own (``tests.server``): 127.0.0.3 is in
``networks.relay``, 127.0.0.2 in ``networks.inbound``; ``trusted_exempt = false`` holds
them to the per-client limits too, so the mx listener can be used.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import trustme

from postroom.serve.services import WARM_AFTER
from postroom.smtp.conntable import key_of, open_table
from tests.server import INBOUND_IP, RELAY_IP, Server, configure_site, descendants, serving
from tests.smtp.smtp_client import Raw

# what a client is told (postroom.smtp.limits)
GREETING = "220 "
FROM_YOUR_ADDRESS = "421 4.7.0 mail.inf.example.ac.uk Error: too many connections from " \
    "your address"
TOO_FAST = FROM_YOUR_ADDRESS + " in a short time; try again later"
IN_TOTAL = "421 4.3.2 mail.inf.example.ac.uk Error: too many connections; try again later"
TOO_MANY_ERRORS = "421 4.7.0 mail.inf.example.ac.uk Error: too many errors"
TOO_MANY_COMMANDS = "421 4.7.0 mail.inf.example.ac.uk Error: too many commands"
TOO_LONG = "421 4.4.2 mail.inf.example.ac.uk Error: session time limit exceeded"
NO_SUCH_USER = "550 5.1.1"
OK = "250 "

WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["workers1", "workers2"])


def limited(site: Path, ca: trustme.CA, workers: int,
            **limits: object) -> AbstractContextManager[Server]:
    """``serving`` with these [limits] keys (trusted clients held to them unless told)."""
    limits.setdefault("trusted_exempt", False)
    lines = "".join(f"{k} = {_toml(v)}\n" for k, v in limits.items())
    return serving(site, ca, replace=(("recipients = 1000\n", "recipients = 1000\n" + lines),),
                   workers=workers)


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return f'"{v}"' if isinstance(v, str) else str(v)


def greeted(port: int, source: str = RELAY_IP) -> tuple[Raw, str]:
    raw = Raw(port, source)
    return raw, raw.reply()


def wait_for_greeting(port: int, source: str, timeout: float = 5) -> Raw:
    """A session that is greeted 220, retried while the server still counts one that
    just closed (it learns of the close a moment later)."""
    end = time.monotonic() + timeout
    while True:
        raw, reply = greeted(port, source)
        if reply.startswith(GREETING) or time.monotonic() > end:
            assert reply.startswith(GREETING), reply
            return raw
        raw.close()
        time.sleep(0.05)


def in_log(server: Server, text: str, timeout: float = 5) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in server.log().splitlines():
            if text in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the mail log:\n{server.log()}")


@WORKERS
def test_connections_per_client(site: Path, ca: trustme.CA, workers: int) -> None:
    with limited(site, ca, workers, client_connections=3) as server:
        port = server.ports["mx"]
        held = [greeted(port) for _ in range(3)]
        assert all(reply.startswith(GREETING) for _, reply in held), held
        refused, reply = greeted(port)
        assert reply == FROM_YOUR_ADDRESS
        assert refused.closed()
        line = in_log(server, "reject: CONNECT from [127.0.0.3]: 421 4.7.0")
        assert "too many connections from your address (3 connections from 127.0.0.3)" in line
        other, reply = greeted(port, INBOUND_IP)  # another client has its own count
        assert reply.startswith(GREETING)
        held[0][0].close()  # one closes: the next is served
        wait_for_greeting(port, RELAY_IP).close()
        for raw, _ in (*held[1:], (other, "")):
            raw.close()


@WORKERS
def test_connections_in_total_per_listener(site: Path, ca: trustme.CA,
                                           workers: int) -> None:
    with limited(site, ca, workers, connections=4) as server:
        port = server.ports["mx"]
        held = [greeted(port, src) for src in (RELAY_IP, RELAY_IP, INBOUND_IP, INBOUND_IP)]
        assert all(reply.startswith(GREETING) for _, reply in held), held
        for src in (RELAY_IP, INBOUND_IP):
            refused, reply = greeted(port, src)
            assert reply == IN_TOTAL
            assert refused.closed()
        in_log(server, "(4 connections on listener mx)")
        # another listener has a total of its own
        sub, reply = greeted(server.ports["submission"])
        assert reply.startswith(GREETING)
        for raw, _ in held:
            raw.close()
        wait_for_greeting(port, RELAY_IP).close()
        sub.close()


@WORKERS
def test_connection_rate_per_client(site: Path, ca: trustme.CA, workers: int) -> None:
    with limited(site, ca, workers, client_rate=5, client_rate_window="1m") as server:
        port = server.ports["mx"]
        for _ in range(5):
            raw, reply = greeted(port)
            assert reply.startswith(GREETING)
            assert raw.cmd("QUIT").startswith("221")
            raw.close()
        refused, reply = greeted(port)
        assert reply == TOO_FAST
        assert refused.closed()
        in_log(server, "(6 connections within 60s, limit 5)")
        other, reply = greeted(port, INBOUND_IP)
        assert reply.startswith(GREETING)
        other.close()


@WORKERS
def test_errors_per_session(site: Path, ca: trustme.CA, workers: int) -> None:
    with limited(site, ca, workers, session_errors=3) as server:
        raw, _ = greeted(server.ports["mx"])
        assert raw.cmd("EHLO client.example").startswith("250")
        assert raw.cmd("MAIL FROM:<someone@inf.example.ac.uk>").startswith(OK)
        for i in range(3):
            assert raw.cmd(f"RCPT TO:<nosuch{i}@inf.example.ac.uk>").startswith(NO_SUCH_USER)
        # the fourth error is answered, then the session ends
        assert raw.cmd("RCPT TO:<nosuch9@inf.example.ac.uk>").startswith(NO_SUCH_USER)
        assert raw.reply() == TOO_MANY_ERRORS
        assert raw.closed()
        in_log(server, "reject: SESSION from client.example [127.0.0.3]: " + TOO_MANY_ERRORS)


@WORKERS
def test_errors_are_forgiven_by_an_accepted_message(site: Path, ca: trustme.CA,
                                                    workers: int) -> None:
    with limited(site, ca, workers, session_errors=2) as server:
        raw, _ = greeted(server.ports["mx"])
        assert raw.cmd("EHLO client.example").startswith("250")
        for round_ in range(3):
            assert raw.cmd("MAIL FROM:<someone@inf.example.ac.uk>").startswith(OK)
            for i in range(2):
                reply = raw.cmd(f"RCPT TO:<nosuch{i}@inf.example.ac.uk>")
                assert reply.startswith(NO_SUCH_USER), (round_, reply)
            assert raw.cmd("RCPT TO:<neilb@inf.example.ac.uk>").startswith(OK)
            assert raw.cmd("DATA").startswith("354")
            assert raw.cmd("Subject: hi\r\n\r\nbody\r\n.").startswith("250 2.0.0")
        assert raw.cmd("QUIT").startswith("221")


@WORKERS
def test_commands_per_session(site: Path, ca: trustme.CA, workers: int) -> None:
    with limited(site, ca, workers, session_commands=10) as server:
        raw, _ = greeted(server.ports["mx"])
        for _ in range(10):
            assert raw.cmd("NOOP").startswith(OK)
        assert raw.cmd("NOOP").startswith(OK)
        assert raw.reply() == TOO_MANY_COMMANDS
        assert raw.closed()
        in_log(server, TOO_MANY_COMMANDS)


@WORKERS
def test_pipelined_commands_after_the_limit_are_not_answered(site: Path, ca: trustme.CA,
                                                              workers: int) -> None:
    with limited(site, ca, workers, session_errors=1) as server:
        raw, _ = greeted(server.ports["mx"])
        assert raw.cmd("EHLO client.example").startswith("250")
        raw.send(b"MAIL FROM:<a@inf.example.ac.uk>\r\nRCPT TO:<nosuch1@inf.example.ac.uk>\r\n"
                 b"RCPT TO:<nosuch2@inf.example.ac.uk>\r\nRCPT TO:<neilb@inf.example.ac.uk>\r\n"
                 b"DATA\r\nSubject: x\r\n\r\nx\r\n.\r\nQUIT\r\n")
        replies = [raw.reply() for _ in range(4)]
        assert replies[0].startswith(OK)
        assert replies[1].startswith(NO_SUCH_USER) and replies[2].startswith(NO_SUCH_USER)
        assert replies[3] == TOO_MANY_ERRORS
        assert raw.closed()
        time.sleep(0.5)
        assert "queued as" not in server.log()
        assert "to=<neilb" not in server.log()


@WORKERS
def test_session_deadline_on_top_of_the_idle_timeout(site: Path, ca: trustme.CA,
                                                     workers: int) -> None:
    with limited(site, ca, workers, session_time=3, idle_timeout=300) as server:
        raw, _ = greeted(server.ports["mx"])
        start = time.monotonic()  # the greeting: the session had begun
        while time.monotonic() - start < 1.5:  # busy, never idle
            assert raw.cmd("NOOP").startswith(OK)
            time.sleep(0.2)
        assert raw.reply() == TOO_LONG
        assert 2.5 < time.monotonic() - start < 5
        assert raw.closed()
        in_log(server, "reject: SESSION from unknown [127.0.0.3]: " + TOO_LONG)


def test_trusted_clients_are_exempt_by_default(site: Path, ca: trustme.CA) -> None:
    with limited(site, ca, 1, client_connections=2, trusted_exempt=True) as server:
        held = [greeted(server.ports["mx"]) for _ in range(5)]
        assert all(reply.startswith(GREETING) for _, reply in held)
        for raw, _ in held:
            raw.close()


# -- many connections -----------------------------------------------------------------------

@contextmanager
def fd_limit(soft: int, hard: int) -> Iterator[None]:
    """This process's RLIMIT_NOFILE for the block (a child started in it inherits it)."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def open_idle(port: int, count: int, source: str = RELAY_IP) -> tuple[list[socket.socket],
                                                                       dict[str, int]]:
    """``count`` connections, each left idle after its first reply; returns the sockets
    still open (greeted) and how many got which reply (``"closed"``: no reply at all)."""
    socks: list[socket.socket] = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(20)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    replies: dict[str, int] = {}
    buffers = {s.fileno(): b"" for s in socks}
    by_fd = {s.fileno(): s for s in socks}
    poll = select.epoll()
    for s in socks:
        poll.register(s.fileno(), select.EPOLLIN)
    kept: list[socket.socket] = []
    deadline = time.monotonic() + 120
    while buffers and time.monotonic() < deadline:
        for fd, _ in poll.poll(1.0):
            try:
                chunk = by_fd[fd].recv(4096)
            except ConnectionError:
                chunk = b""
            buffers[fd] += chunk
            if chunk and b"\r\n" not in buffers[fd]:
                continue
            first = buffers.pop(fd).split(b"\r\n")[0].decode()
            key = "closed" if not first else GREETING if first.startswith(GREETING) else first
            replies[key] = replies.get(key, 0) + 1
            poll.unregister(fd)
            if key == GREETING:
                kept.append(by_fd[fd])
            else:
                by_fd[fd].close()
    poll.close()
    assert not buffers, f"{len(buffers)} connections got no reply in time"
    return kept, replies


def rss_kib(pid: int) -> int:
    """The resident memory of ``pid`` and its descendants (the fork server and the intake
    processes), KiB."""
    total = 0
    for p in [pid, *descendants(pid)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def settled_rss_kib(pid: int, timeout: float = 15) -> int:
    """``rss_kib`` once it has stopped growing: a site with lists imports the list engine
    a moment after the start (``postroom.serve.services.WARM_AFTER``), some 25 MiB that
    must not be counted as the connections'."""
    last = rss_kib(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        now = rss_kib(pid)
        if abs(now - last) < 256:
            return now
        last = now
    return last


@WORKERS
def test_ten_thousand_idle_connections_are_held_or_refused_cleanly(
        site: Path, ca: trustme.CA, workers: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 10_500:
        pytest.skip(f"the file descriptor hard limit is {hard}; this test needs 10,500")
    with fd_limit(hard, hard), limited(site, ca, workers, connections=6000,
                                       trusted_exempt=True) as server:
        assert server.proc is not None
        warm, _ = open_idle(server.ports["mx"], 50)
        for s in warm:
            s.close()
        time.sleep(WARM_AFTER + 0.5)
        pids = server.intake_pids()
        before = settled_rss_kib(server.proc.pid)
        start = time.monotonic()
        kept, replies = open_idle(server.ports["mx"], 10_000)
        took = time.monotonic() - start
        assert replies == {GREETING: 6000, IN_TOTAL: 4000}, replies
        time.sleep(1)
        after = rss_kib(server.proc.pid)
        per = (after - before) / len(kept)
        print(f"\nworkers={workers}: 6000 idle held, 4000 refused in {took:.1f}s; RSS "
              f"{before} KiB -> {after} KiB, {per:.1f} KiB per idle connection")
        # every process is still the one that started, and takes mail
        assert server.proc.poll() is None
        assert server.intake_pids() == pids
        assert per * 1024 <= 10_000, f"{per:.1f} KiB per idle connection"  # issue 15
        for s in kept:
            s.close()
        raw = wait_for_greeting(server.ports["mx"], RELAY_IP, timeout=20)
        assert raw.cmd("EHLO client.example").startswith("250")
        raw.close()


@WORKERS
def test_refused_with_421_before_the_descriptor_limit(site: Path, ca: trustme.CA,
                                                      workers: int) -> None:
    configure_site(site, ca)
    profile = site / "postroom.toml"
    profile.write_text(profile.read_text().replace(
        "recipients = 1000\n", "recipients = 1000\ntrusted_exempt = false\n"
        "client_connections = 1000\nclient_rate = 0\n"))
    # 400 descriptors for each server process: 144 sessions each (400 less the reserve)
    server = Server(site, workers, wrapper=("prlimit", "--nofile=400:400")).start()
    try:
        kept, replies = open_idle(server.ports["mx"], 500)
        assert set(replies) <= {GREETING, IN_TOTAL}, replies
        assert replies[GREETING] <= 144 * workers
        assert replies[IN_TOTAL] >= 500 - 144 * workers
        in_log(server, "file descriptor limit")
        for s in kept:
            s.close()
        raw = wait_for_greeting(server.ports["mx"], RELAY_IP, timeout=10)
        assert raw.cmd("EHLO client.example").startswith("250")
        raw.close()
        assert server.proc is not None and server.proc.poll() is None
    finally:
        server.stop()


def test_a_crashed_intake_process_leaves_no_count_behind(site: Path, ca: trustme.CA) -> None:
    with limited(site, ca, 2, client_connections=2) as server:
        assert server.proc is not None
        port = server.ports["mx"]
        wait_for_greeting(port, RELAY_IP).close()  # both intake processes are up
        held = [greeted(port) for _ in range(2)]
        assert all(reply.startswith(GREETING) for _, reply in held)
        assert greeted(port)[1] == FROM_YOUR_ADDRESS
        old = server.intake_pids()
        assert len(old) == 2
        for pid in old:
            os.kill(pid, signal.SIGKILL)  # their counts stay in the table
        end = time.monotonic() + 20
        while time.monotonic() < end:
            now = server.intake_pids()
            if len(now) == 2 and not set(now) & set(old):
                break
            time.sleep(0.1)
        for raw, _ in held:
            assert raw.closed()
        again = [wait_for_greeting(port, RELAY_IP, timeout=10) for _ in range(2)]
        assert greeted(port)[1] == FROM_YOUR_ADDRESS
        for raw in again:
            raw.close()


def test_the_table_drops_the_counts_of_a_dead_process(tmp_path: Path) -> None:
    """The shared table itself, between real processes: a process killed while it holds a
    client's last allowed connection does not keep that client out."""
    key = key_of("mx/192.0.2.1")
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child takes a column of its own, counts twice, and waits to die
        try:
            table = open_table(tmp_path / "connections")
            assert table.shared and isinstance(table.acquire([(key, 2), (key, 2)]), list)
            os.write(ready_w, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    table = open_table(tmp_path / "connections")  # this process: another column
    assert table.count(key) == 2 and table.acquire([(key, 2)]) == 0  # at the limit
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    time.sleep(1.1)  # dead columns are looked for at most once a second
    held = table.acquire([(key, 2)])
    assert isinstance(held, list)
    assert table.count(key) == 1
    table.release(held)
    assert table.count(key) == 0
