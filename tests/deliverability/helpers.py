"""What the deliverability tests share: a served example site whose outside mail goes to
a sink, and a wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import trustme

from tests.conftest import run
from tests.serve.test_reload import route_to
from tests.server import INBOUND_IP, Server, configure_site
from tests.smtp.smtp_client import client

SITE_DOMAIN = "inf.example.ac.uk"


async def wait_for(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def ok(*args: str, site: Path) -> str:
    r = run(*args, site=site)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def prepare(site: Path, sink_port: int, *, extra: str = "",
            ca: trustme.CA | None = None) -> None:
    """The example site, served on port-0 listeners, its outside mail to the sink."""
    configure_site(site, ca or trustme.CA(), extra=extra)
    route_to(site, sink_port)


async def start(site: Path, workers: int = 1) -> Server:
    return await asyncio.to_thread(lambda: Server(site, workers=workers).start())


def send_from_upstream(server: Server, sender: str, rcpt: str, body: bytes) -> None:
    """Mail handed over by an upstream relay (the inbound network), as the MX gets it."""
    with client(server.ports["mx"], INBOUND_IP) as c:
        c.sendmail(sender, [rcpt], body)


def message(sender: str, to: str, subject: str) -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n"
            f"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\n\r\nHello.\r\n").encode()
