"""A real `postroom serve` in a subprocess, on port-0 listeners, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from tests.conftest import POSTROOM

INBOUND_IP = "127.0.0.2"   # stands for the upstream relays
RELAY_IP = "127.0.0.3"     # an internal machine
OUTSIDE_IP = "127.0.0.4"   # anyone else

LISTENERS = """
[[listeners]]
name = "mx"
role = "mx"
address = "127.0.0.1"
port = 0

[[listeners]]
name = "submission"
role = "submission"
address = "127.0.0.1"
port = 0

[[listeners]]
name = "submissions"
role = "submissions"
address = "127.0.0.1"
port = 0
"""


def configure_site(site: Path, ca: trustme.CA, *, extra: str = "",
                   networks: bool = True) -> None:
    """Turn an example site into a test site: port-0 listeners, test networks, test cert."""
    text = (site / "postroom.toml").read_text()
    text = re.sub(r"^\[\[listeners\]\]\n(?:[^\[\n].*\n|\n)*", "", text, flags=re.M)
    # the web listener is off in tests unless a test's ``extra`` turns it on (port 0)
    text = re.sub(r"^\[web\]\n(?:[^\[\n].*\n|\n)*", "", text, flags=re.M)
    text = re.sub(r"^\[networks\]\n(?:[^\[\n].*\n|\n)*", "", text, flags=re.M) \
        if networks else text
    if networks:
        text += f'\n[networks]\ninbound = ["{INBOUND_IP}/32"]\nrelay = ["{RELAY_IP}/32"]\n'
    text += LISTENERS + extra
    (site / "postroom.toml").write_text(text)
    cert = ca.issue_cert("mail.inf.example.ac.uk", "localhost", "127.0.0.1")
    (site / "tls").mkdir(exist_ok=True)
    cert.private_key_pem.write_to_path(str(site / "tls/key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(site / "tls/cert.pem"))


@dataclass
class Server:
    site: Path
    workers: int = 1
    proc: subprocess.Popen[str] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    wrapper: tuple[str, ...] = ()  # a command serve runs under, e.g. ("prlimit", "--nofile=400")

    def start(self, timeout: float = 20) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [*self.wrapper, POSTROOM, "serve", "--site", str(self.site),
             "--workers", str(self.workers)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True)  # a group of its own: kill() takes it down at once
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("postroom serve exited:\n" + "".join(self.output))
            self.output.append(line)
            m = re.match(r"postroom: listening (\S+) \(\S+\) on \S+:(\d+)", line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))
            if line.startswith("postroom: serving"):
                # keep reading, so a chatty server never blocks on a full pipe
                threading.Thread(target=self._drain_output, daemon=True).start()
                return self
        raise RuntimeError("postroom serve did not start:\n" + "".join(self.output))

    def _drain_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 40) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """SIGKILL the whole tree (master and intake processes) at the same instant, as
        a crash of the machine or ``kill -9 -PGID`` does: one signal to the process group."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        # an intake process that left the group would be a bug; never leave one behind
        # (one started with exec, or one forked by the fork server: the master's command)
        for pattern in (f"postroom.worker --site {self.site}", f"serve --site {self.site} "):
            subprocess.run(["pkill", "-KILL", "-f", pattern], check=False)

    def log(self) -> str:
        p = self.site / "log/mail.log"
        return p.read_text() if p.exists() else ""

    def fork_server(self) -> int | None:
        """The pid of the fork server of the intake processes (the master's child that
        runs the master's own command line), or None."""
        assert self.proc is not None
        own = cmdline(self.proc.pid)
        for pid in children(self.proc.pid):
            if cmdline(pid) == own:
                return pid
        return None

    def intake_pids(self) -> list[int]:
        """The intake processes: the fork server's children, and any started with exec
        (``postroom.worker``) by the master itself."""
        assert self.proc is not None
        forks = self.fork_server()
        pids = children(forks) if forks is not None else []
        return pids + [pid for pid in children(self.proc.pid)
                       if "postroom.worker" in cmdline(pid)]


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (none once it is gone)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children, and so on."""
    found: list[int] = []
    todo = children(pid)
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children(p))
    return found


def cmdline(pid: int) -> str:
    """``pid``'s command line, its arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except FileNotFoundError:
        return ""


PYTHON = sys.executable


@contextlib.contextmanager
def serving(site: Path, ca: trustme.CA, *, replace: tuple[tuple[str, str], ...] = (),
            extra: str = "", workers: int = 1) -> Iterator[Server]:
    """A test site with profile edits (``replace`` pairs, ``extra`` tables), served."""
    configure_site(site, ca, extra=extra)
    profile = site / "postroom.toml"
    text = profile.read_text()
    for old, new in replace:
        assert old in text, f"{old!r} not in the profile"
        text = text.replace(old, new)
    profile.write_text(text)
    server = Server(site, workers).start()
    try:
        yield server
    finally:
        server.stop()
