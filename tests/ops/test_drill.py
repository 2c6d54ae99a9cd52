"""The disaster drill, as the runbook tells it, on SQLite and on PostgreSQL.

The example site with a list and members queues mail while its outside destinations are
down (nothing listens on the sinks' ports); it is backed up twice, once while mail
arrives. After the second backup the old machine still delivers what it can (one
destination comes back) and takes more mail, then it dies (``kill -9``) and its site
home is moved aside: the dead machine's disk. The newest generation is restored into a
new directory, which is quiescent and passes ``postroom check``; the old disk's queue is
salvaged with ``queue import``; the site resumes; every message reaches the sinks exactly
once: none lost, none that the old machine had delivered sent again.

Each command is timed; the timings go to the test's log and to ``drill-timings.txt`` in
the test's directory (docs/operations.md quotes them).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import POSTROOM, ThreadedDns
from tests.ops.conftest import ask, send
from tests.pgserver import PostgresServer, PostgresUnavailable, start_postgres
from tests.server import Server, configure_site
from tests.sinks import Received, Sink

log = logging.getLogger("drill")
LIST = "drill@inf.example.ac.uk"
MEMBERS = ["m1@staffmail.example.ac.uk", "m2@staffmail.example.ac.uk"]
TO_A = "neilb@inf.example.ac.uk"     # -> neilb@staffmail.example.ac.uk, sink A
TO_B = "pvisitor@inf.example.ac.uk"  # -> p.visitor@uni-elsewhere.example.edu, sink B
A_RCPT, B_RCPT = "neilb@staffmail.example.ac.uk", "p.visitor@uni-elsewhere.example.edu"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    try:
        with start_postgres() as server:
            yield server
    except PostgresUnavailable as e:
        pytest.fail(f"cannot start PostgreSQL for the drill: {e}", pytrace=False)


@pytest.fixture
def dns() -> Iterator[ThreadedDns]:
    server = ThreadedDns({
        "mail.inf.example.ac.uk": {"A": ["127.0.0.1"]},
        "lists.inf.example.ac.uk": {"A": ["127.0.0.1"]},
        "inf.example.ac.uk": {"MX": [(10, "mail.inf.example.ac.uk")]},
    }).start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Drill:
    def __init__(self, root: Path) -> None:
        self.timings: list[tuple[str, float]] = []
        self.out = root / "drill-timings.txt"

    def run(self, *args: str, site: Path | None = None, ok: bool = True,
            label: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [POSTROOM, *args] + (["--site", str(site)] if site else [])
        start = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        took = time.monotonic() - start
        name = label or "postroom " + " ".join(a if "/" not in a else Path(a).name
                                                for a in args)
        self.timings.append((name, took))
        log.info("drill: %-45s %6.2f s  exit %d", name, took, done.returncode)
        if ok:
            assert done.returncode == 0, f"{name}:\n{done.stdout}\n{done.stderr}"
        return done

    def write(self) -> None:
        total = sum(t for name, t in self.timings if not name.startswith("recovery"))
        lines = [f"{name:48s} {took:7.2f} s" for name, took in self.timings]
        lines.append(f"{'all commands':48s} {total:7.2f} s")
        self.out.write_text("\n".join(lines) + "\n")
        log.info("drill timings:\n%s", "\n".join(lines))


def wait(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def pairs(messages: list[Received]) -> Counter[tuple[str, str]]:
    """(Message-ID, recipient) of every delivery a sink took."""
    out: Counter[tuple[str, str]] = Counter()
    for m in messages:
        mid = email.message_from_bytes(m.content, policy=email.policy.default)["Message-ID"]
        for rcpt in m.rcpt_tos:
            out[(str(mid), rcpt)] += 1
    return out


class ThreadSink:
    """A Sink in an event loop of its own thread, on a port chosen beforehand (until it
    starts, nothing listens there: a destination that is down)."""

    def __init__(self, port: int) -> None:
        self.sink = Sink(port=port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sink.start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sink.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def kill_tree(site: Path) -> None:
    """The rest of the dead machine: every process still serving ``site`` (the web
    processes outlive a SIGKILLed master), killed by its pid."""
    import os
    import signal

    for pid in Path("/proc").iterdir():
        try:
            argv = (pid / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--site" in argv and os.fsencode(site) in argv and pid.name.isdigit():
            try:
                os.kill(int(pid.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def web_status(site: Path) -> int:
    """The HTTP status of the site's web interface home page (it stays up while quiescent)."""
    import urllib.error
    import urllib.request

    bound = json.loads((site / "state" / "listeners.json").read_text())
    port = next(b["port"] for b in bound if b["name"] == "web")
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            assert time.monotonic() < deadline, "the web interface never answered"
            time.sleep(0.1)


def prepare(site: Path, ca: trustme.CA, dns: ThreadedDns, port_a: int, port_b: int,
            dest: Path, database_url: str) -> None:
    checks = ('\n[check]\ndeliverable = ["neilb@inf.example.ac.uk", "drill@inf.example.ac.uk"]'
              '\nundeliverable = ["nosuch-user@inf.example.ac.uk"]\n'
              'names = ["mail.inf.example.ac.uk", "lists.inf.example.ac.uk"]\n'
              f'\n[backup]\ndest = "{dest}"\nevery = "1d"\n'
              '\n[web]\nenabled = true\naddress = "127.0.0.1"\nport = 0\n')
    if database_url:
        checks += f'\n[database]\nurl = "{database_url}"\n'
    configure_site(site, ca, extra=checks)
    profile = site / "postroom.toml"
    text = re.sub(r"^\[dns\]\n(?:[^\[\n].*\n|\n)*", "", profile.read_text(), flags=re.M)
    profile.write_text(text + f'\n[dns]\nnameservers = ["{dns.nameserver}"]\ntimeout = 2\n')
    (site / "maps" / "mailertable").write_text(
        f"staffmail.example.ac.uk esmtp:[127.0.0.1]:{port_a}\n"
        f".                       esmtp:[127.0.0.1]:{port_b}\n")


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_disaster_drill(store: str, example_site: Path, ca: trustme.CA, dns: ThreadedDns,
                        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg").create_database() if store == "postgresql" else ""
    new_url = request.getfixturevalue("pg").create_database() if url else ""
    drill = Drill(tmp_path)
    dest, new, olddisk = tmp_path / "mirror", tmp_path / "newhome", tmp_path / "olddisk"
    port_a, port_b = free_port(), free_port()
    site = example_site
    prepare(site, ca, dns, port_a, port_b, dest, url)
    drill.run("db", "upgrade", site=site)
    drill.run("lists", "create", LIST, "--owner", "neilb@inf.example.ac.uk", site=site)
    drill.run("members", "add", LIST, *MEMBERS, site=site)
    sink_a, sink_b = ThreadSink(port_a), ThreadSink(port_b)
    server = Server(site, workers=2).start()
    sent: set[tuple[str, str]] = set()
    try:
        for i in range(3):
            sent.add((send(server, TO_A, f"drill a {store} {i}"), A_RCPT))
        b_sent = {(send(server, TO_B, f"drill b {store} {i}"), B_RCPT) for i in range(2)}
        post = send(server, LIST, f"drill post {store}", sender=MEMBERS[0])
        sent |= {(post, m) for m in MEMBERS}
        wait(lambda: server.log().count("stat=Deferred") >= 5 + len(MEMBERS), "deferrals")
        # backup 1, while mail arrives
        stop = threading.Event()
        during: list[str] = []

        def arriving() -> None:
            while not stop.is_set() and len(during) < 20:
                during.append(send(server, TO_A, f"drill during {store} {len(during)}"))

        sender = threading.Thread(target=arriving)
        sender.start()
        try:
            time.sleep(0.2)
            drill.run("backup", str(dest), site=site, label="backup 1 (mail arriving)")
        finally:
            stop.set()
            sender.join()
        sent |= {(mid, A_RCPT) for mid in during}
        drill.run("backup", str(dest), site=site, label="backup 2")
        # after the backup: destination B comes back and the old machine delivers to it
        sink_b.start()
        drill.run("queue", "flush", site=site)
        wait(lambda: len(pairs(sink_b.sink.messages)) == 2, "the old machine's deliveries")
        # ... and takes more mail, then dies
        for i in range(2):
            sent.add((send(server, TO_A, f"drill after {store} {i}"), A_RCPT))
        wait(lambda: server.log().count("stat=Deferred") >= 8 + len(MEMBERS) + len(during),
             "the last deferrals")
    finally:
        server.kill()
        kill_tree(site)
    kill_time = time.monotonic()
    site.rename(olddisk)

    # -- the replacement machine
    args = ["restore", str(dest), str(new)] + (["--database-url", new_url] if url else [])
    restored = drill.run(*args, label="restore (newest generation)")
    assert "QUIESCENT" in restored.stdout and "next steps:" in restored.stdout
    assert "postroom check" in restored.stdout and "queue import" in restored.stdout
    assert "tell their postmasters" in restored.stdout
    status = drill.run("status", site=new)
    assert "mode: QUIESCENT" in status.stdout
    checked = drill.run("check", "--json", site=new)
    report = json.loads(checked.stdout)
    assert report["ok"] is True, checked.stdout
    items = {i["name"]: i["status"] for i in report["items"]}
    assert items["quiescent"] == "warn" and items["store"] == "pass"
    assert items[f"list {LIST}"] == "pass" and items["backup"] == "pass"
    salvaged = drill.run("queue", "import", str(olddisk / "queue"), site=new)
    out = salvaged.stdout
    assert "taken once, with the old disk's state" in out          # in both
    assert out.count("finished on the old machine after the backup") == 2  # sink B's
    assert out.count(": imported as ") == 2                         # after the backup
    sink_a.start()
    new_server = Server(new, workers=2).start()
    try:
        ask(new, "status")  # serve is up, its control channel too
        web = web_status(new)
        assert web == 200, f"the web interface of the quiescent site answers {web}"
        drill.run("resume", site=new)
        drill.run("queue", "flush", site=new)
        try:
            # A flush right after serve starts can leave a few messages to their normal
            # retry time (seen 1 run in 4; a runner matter, see the operations runbook):
            # the operator flushes again, as the runbook says.
            for attempt in range(4):
                try:
                    wait(lambda: set(pairs(sink_a.sink.messages)) >= sent, "every message",
                         timeout=15)
                    break
                except AssertionError:
                    if attempt == 3:
                        raise
                    drill.run("queue", "flush", site=new, label="postroom queue flush (again)")
        except AssertionError:
            missing = sent - set(pairs(sink_a.sink.messages))
            queue = drill.run("queue", site=new, ok=False).stdout
            raise AssertionError(f"not delivered: {sorted(missing)}\nimport said:\n{out}\n"
                                 f"queue:\n{queue}\nlog:\n{new_server.log()[-3000:]}\n"
                                 f"old log:\n{(olddisk / 'log/mail.log').read_text()[-4000:]}"
                                 ) from None
        time.sleep(1.0)  # anything sent twice would arrive now
        drill.run("queue", site=new)
        wait(lambda: not list((new / "queue" / "active").glob("*.env")), "an empty queue")
    finally:
        new_server.stop()
        sink_a.stop()
        sink_b.stop()
    recovery = time.monotonic() - kill_time
    got_a, got_b = pairs(sink_a.sink.messages), pairs(sink_b.sink.messages)
    assert set(got_a) == sent and all(n == 1 for n in got_a.values()), got_a
    assert set(got_b) == b_sent and all(n == 1 for n in got_b.values()), got_b
    drill.timings.append(("recovery, kill -9 to the last delivery", recovery))
    drill.write()
    assert sum(t for name, t in drill.timings if name.startswith(("restore", "postroom"))) \
        < 15 * 60
    shutil.rmtree(olddisk / "queue" / "imported", ignore_errors=True)
