"""Shared fixtures: example sites made by the real `postroom init`."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Every DNS query in the tests goes to a server a test started on 127.0.0.1: a site without
# [dns] nameservers makes postroom fail instead of asking the system resolver.
os.environ["POSTROOM_FORBID_SYSTEM_DNS"] = "1"

# No per-example deadline: the suite runs one worker per core beside the servers its tests
# start, so one example can wait for a core for longer than hypothesis's 200 ms. What an
# example must not take long over says so itself (the fuzz harness times every input).
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POSTROOM = str(BIN / "postroom")
SENDMAIL = str(BIN / "postroom-sendmail")


class ThreadedDns:
    """The test DNS server in a thread of its own, for servers run as subprocesses."""

    def __init__(self, zone: dict[str, dict[str, list[Any]]]) -> None:
        from tests.dnsserver import DnsServer

        self.server = DnsServer(zone)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ThreadedDns:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    @property
    def nameserver(self) -> str:
        return self.server.nameserver

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# Names the example site routes to, all on this machine; everything else is NXDOMAIN.
EXAMPLE_ZONE: dict[str, dict[str, list[Any]]] = {
    "smtp.staffmail.example.ac.uk": {"A": ["127.0.0.1"]},
    "mailrelay.ed.example.ac.uk": {"A": ["127.0.0.1"]},
    "gmail.example.com": {"MX": [(10, "mx.gmail.example.com")]},
    "mx.gmail.example.com": {"A": ["127.0.0.1"]},
}


@pytest.fixture(scope="session")
def dns_server() -> Iterator[ThreadedDns]:
    """Every DNS query a test makes goes here (never to the system resolver)."""
    server = ThreadedDns(EXAMPLE_ZONE).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening) for the session."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(scope="session")
def example_template(tmp_path_factory: pytest.TempPathFactory, dns_server: ThreadedDns,
                     closed_port: int) -> Path:
    """The example site, with DNS pointed at the test server and SMTP deliveries at a port
    that refuses: intake tests leave their mail deferred, and nothing leaves loopback."""
    d = tmp_path_factory.mktemp("template") / "site"
    subprocess.run([POSTROOM, "init", str(d), "--example"], check=True, capture_output=True)
    with open(d / "postroom.toml", "a") as f:
        f.write(f'\n[dns]\nnameservers = ["{dns_server.nameserver}"]\ntimeout = 2\n'
                f"\n[delivery]\nsmtp_port = {closed_port}\nconnect_timeout = 2\n")
    return d


@pytest.fixture
def example_site(example_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the example site for each test."""
    d = tmp_path / "site"
    shutil.copytree(example_template, d)
    return d


def run(*args: str, site: Path | None = None, input: str | bytes | None = None,
        cmd: str = POSTROOM) -> subprocess.CompletedProcess[str]:
    argv = [cmd, *args]
    if site is not None:
        argv += ["--site", str(site)]
    return subprocess.run(argv, capture_output=True, text=isinstance(input, str) or input is None,
                          input=input, timeout=60)
