"""Fixtures of the operations tests: a test CA, an rsync daemon on 127.0.0.1, and helpers
that queue mail through a real ``postroom serve``."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.server import INBOUND_IP, Server
from tests.smtp.smtp_client import client


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclass
class RsyncDaemon:
    """Three modules on one directory: ``mirror`` (a good one), ``lossy`` (silently drops
    every file named ``aliases``: a copy that comes out short) and ``nodelete`` (refuses
    ``--delete``)."""

    port: int
    root: Path      # what module "mirror" holds
    log: Path

    def url(self, path: str = "", module: str = "mirror") -> str:
        return f"rsync://127.0.0.1:{self.port}/{module}/{path}".rstrip("/")


def _free_port() -> int:
    """rsync --daemon cannot listen on port 0: take a port the kernel just gave out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def rsync_daemon(tmp_path: Path) -> Iterator[RsyncDaemon]:
    root = tmp_path / "mirror"
    root.mkdir()
    conf = tmp_path / "rsyncd.conf"
    log = tmp_path / "rsyncd.log"
    conf.write_text(f"use chroot = false\nmunge symlinks = false\nlog file = {log}\n"
                    f"pid file = {tmp_path}/rsyncd.pid\n"
                    f"[mirror]\npath = {root}\nread only = false\n"
                    f"uid = {os.getuid()}\ngid = {os.getgid()}\n"
                    f"[lossy]\npath = {root}\nread only = false\nexclude = aliases\n"
                    f"uid = {os.getuid()}\ngid = {os.getgid()}\n"
                    f"[nodelete]\npath = {root}\nread only = false\n"
                    f"refuse options = delete\nuid = {os.getuid()}\ngid = {os.getgid()}\n")
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--port={port}",
                                 "--address=127.0.0.1", f"--config={conf}"],
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            break
    else:
        pytest.fail("rsync --daemon would not start (is rsync installed? make deps)")
    try:
        yield RsyncDaemon(port, root, log)
    finally:
        proc.terminate()
        proc.wait(10)


def send(server: Server, rcpt: str, subject: str, sender: str = "ann@example.net") -> str:
    """Mail from the upstream relays to ``rcpt``; returns its Message-ID."""
    mid = f"<{subject.replace(' ', '.')}@example.net>"
    body = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
            f"\r\n{subject}\r\n").encode()
    with client(server.ports["mx"], INBOUND_IP) as c:
        c.sendmail(sender, [rcpt], body)
    return mid


def queued(site: Path) -> list[str]:
    active = site / "queue" / "active"
    return sorted(p.stem for p in active.glob("*.env")) if active.is_dir() else []


def ask(site: Path, cmd: str, *args: str, timeout: float = 20) -> dict[str, object]:
    """Ask the site's server over the control channel, waiting for it to listen (serve
    says "serving" before its control service has started)."""
    from postroom import control

    deadline = time.monotonic() + timeout
    while True:
        reply = control.request(site / "state", cmd, *args, timeout=timeout)
        if reply is not None:
            return reply
        assert time.monotonic() < deadline, "the server's control channel never answered"
        time.sleep(0.05)
