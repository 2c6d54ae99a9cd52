"""Fixtures for the courier tests: sites made by the real ``postroom init``, a loopback DNS
server and SMTP sinks, all on port 0 in the test's event loop."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from postroom.envelope import Delivery, Envelope, Recipient
from postroom.site import Site, load
from postroom.types import Job
from tests.dnsserver import DnsServer

SENDER = "alice@inf.example.ac.uk"
MESSAGE = (b"Received: from client.example (client.example [192.0.2.1])\r\n"
           b"\tby mail.inf.example.ac.uk (postroom) with ESMTP id TESTQID; "
           b"Thu, 1 Jan 2026 00:00:00 +0000\r\n"
           b"From: Alice <alice@inf.example.ac.uk>\r\n"
           b"To: Bob <bob@example.test>\r\n"
           b"Subject: courier test\r\n"
           b"Message-ID: <courier-test@inf.example.ac.uk>\r\n"
           b"\r\n"
           b"Hello Bob,\r\n"
           b"From the top: this line starts with From.\r\n"
           b".a line that starts with a dot\r\n"
           b"Bye.\r\n")

SiteFactory = Callable[..., Site]


SINK_MODES = ["pipelining", "one command at a time"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Courier tests run in both sink modes; those marked ``pipelining_only`` (about a
    server that offers PIPELINING) in that mode only."""
    if "sink_pipelining" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("pipelining_only") is not None
        metafunc.parametrize("sink_pipelining", SINK_MODES[:1] if only else SINK_MODES,
                             indirect=True)


@pytest.fixture(autouse=True)
def sink_pipelining(request: pytest.FixtureRequest) -> Any:
    """Every courier test runs against sinks that offer PIPELINING (the client then sends
    a transaction in two writes) and against sinks that do not."""
    from tests import sinks

    sinks.PIPELINING_DEFAULT[0] = request.param == "pipelining"
    yield request.param
    sinks.PIPELINING_DEFAULT[0] = False


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths fsynced during the test, in order (each fsync is recorded, then done)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_keys(text: str, table: str, keys: dict[str, Any]) -> str:
    """Put ``keys`` into ``[table]`` of a TOML text (adding the table if it is missing)."""
    lines = "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items())
    header = re.search(rf"^\[{re.escape(table)}\][ \t]*$", text, re.M)
    if header:
        body_end = re.search(r"^\[", text[header.end():], re.M)
        end = header.end() + (body_end.start() if body_end else len(text) - header.end())
        body = "".join(line for line in text[header.end():end].splitlines(keepends=True)
                       if line.split("=", 1)[0].strip() not in keys)
        return text[: header.end()] + "\n" + lines + body.lstrip("\n") + text[end:]
    return text.rstrip("\n") + f"\n\n[{table}]\n" + lines


@pytest.fixture
def make_site(example_site: Path) -> SiteFactory:
    """``make_site(delivery={...}, dns={...}, queue={...}, relays=[{...}])`` -> a loaded Site."""

    path = example_site / "postroom.toml"
    pristine = path.read_text()

    def make(*, delivery: dict[str, Any] | None = None, dns: dict[str, Any] | None = None,
             queue: dict[str, Any] | None = None,
             relays: list[dict[str, Any]] | None = None) -> Site:
        text = pristine  # each call starts from the example profile
        for table, keys in (("delivery", delivery), ("dns", dns), ("queue", queue)):
            if keys:
                text = set_keys(text, table, keys)
        for relay in relays or []:
            text = text.rstrip("\n") + "\n\n[[delivery.relays]]\n" + "".join(
                f"{k} = {_toml(v)}\n" for k, v in relay.items())
        path.write_text(text)
        return load(example_site)

    return make


def make_job(mailer: str, host: str, users: list[str], *, sender: str = SENDER,
             message: bytes = MESSAGE, queue_id: str = "TESTQID", **envelope: Any) -> Job:
    """A Job with one recipient (and one delivery) per user."""
    recipients = [Recipient(u, [Delivery(mailer, host, u, u)]) for u in users]
    env = Envelope(sender=sender, recipients=recipients, arrival=time.time(), id=queue_id,
                   size=len(message), **envelope)
    return Job(env, message, env.deliveries, queue_id)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    server = await DnsServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def serve() -> AsyncIterator[list[asyncio.Server]]:
    """Scripted servers a test starts; closed after it."""
    servers: list[asyncio.Server] = []
    yield servers
    for s in servers:
        s.close()
        await s.wait_closed()
