"""SRS through a real ``postroom serve``: forwarded outside mail reaches the sink with an
SRS0 sender in the primary domain, a bounce to that address reaches the original sender,
forged and expired SRS addresses get 550 at RCPT (and from ``verify``); local senders and
mail relayed straight out keep their sender; ``verify --explain`` and the log show it."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.srs import Srs, secrets
from tests.conftest import run
from tests.deliverability.helpers import (
    SITE_DOMAIN,
    message,
    prepare,
    send_from_upstream,
    start,
    wait_for,
)
from tests.server import INBOUND_IP, RELAY_IP, Server
from tests.sinks import Sink
from tests.smtp.smtp_client import client

SRS0 = re.compile(r"SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=example\.com=alice@inf\.example\.ac\.uk")


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


@pytest.fixture
async def served(example_site: Path, sink: Sink) -> AsyncIterator[tuple[Path, Server]]:
    prepare(example_site, sink.port)
    server = await start(example_site)
    yield example_site, server
    await asyncio.to_thread(server.stop)


def codec(site: Path) -> Srs:
    return Srs(tuple(s for s, _ in secrets.read(site / "keys/srs.secret")), 21)


async def test_forwarded_mail_gets_an_srs_sender_and_its_bounce_comes_back(
        served: tuple[Path, Server], sink: Sink) -> None:
    _, server = served
    await asyncio.to_thread(send_from_upstream, server, "alice@example.com",
                            f"neilb@{SITE_DOMAIN}", message("alice@example.com",
                                                            f"neilb@{SITE_DOMAIN}", "fwd"))
    await wait_for(lambda: len(sink.messages) == 1)
    got = sink.messages[0]
    assert got.rcpt_tos == ["neilb@staffmail.example.ac.uk"]
    assert SRS0.fullmatch(got.mail_from), got.mail_from
    assert f"srs=<{got.mail_from}>" in server.log()
    # the stored envelope was not changed: the queue file named the original sender
    assert "from=<alice@example.com>" in server.log()

    # the destination bounces to the SRS address: it goes on to alice
    dsn = b"From: MAILER-DAEMON@staffmail.example.ac.uk\r\nSubject: failed\r\n\r\nNo.\r\n"
    await asyncio.to_thread(send_from_upstream, server, "", got.mail_from, dsn)
    await wait_for(lambda: len(sink.messages) == 2)
    bounce = sink.messages[1]
    assert bounce.rcpt_tos == ["alice@example.com"] and bounce.mail_from == "<>"


def rcpt_reply(server: Server, rcpt: str) -> tuple[int, bytes]:
    with client(server.ports["mx"], INBOUND_IP) as c:
        c.ehlo("upstream.test")
        c.mail("")
        return c.rcpt(rcpt)


async def test_forged_and_expired_srs_addresses_are_refused_at_rcpt(
        served: tuple[Path, Server]) -> None:
    site, server = served
    good = codec(site).forward("alice@example.com", SITE_DOMAIN)
    forged = good.replace("=example.com=", "=evil.example=")
    old = codec(site).forward("alice@example.com", SITE_DOMAIN, time.time() - 30 * 86400)
    code, text = await asyncio.to_thread(rcpt_reply, server, forged)
    assert (code, text.decode()) == (550, f"5.7.1 <{forged}>: Invalid SRS address: the SRS "
                                          "hash does not match (forged or mangled address)")
    code, text = await asyncio.to_thread(rcpt_reply, server, old)
    assert code == 550 and text.startswith(b"5.7.1") and b"expired (30 days old" in text
    code, _ = await asyncio.to_thread(rcpt_reply, server, good)
    assert code == 250
    # verify gives the same verdicts
    r = run("verify", good, forged, old, site=site)
    assert r.returncode == 67
    lines = r.stdout.splitlines()
    assert lines[0].startswith("alice@example.com... deliverable: mailer esmtp")
    assert lines[1] == (f"{forged}... Invalid SRS address: the SRS hash does not match "
                        "(forged or mangled address)")
    assert "expired" in lines[2]
    assert "reject: RCPT" in server.log() and "Invalid SRS address" in server.log()


async def test_local_senders_and_straight_relaying_keep_their_sender(
        served: tuple[Path, Server], sink: Sink) -> None:
    _, server = served
    # a local sender forwarded: ours already, SPF passes
    await asyncio.to_thread(send_from_upstream, server, f"rt@{SITE_DOMAIN}",
                            f"neilb@{SITE_DOMAIN}", message(f"rt@{SITE_DOMAIN}", "x", "local"))
    # an internal machine relaying an outside sender's mail straight out: not a forward
    with client(server.ports["mx"], RELAY_IP) as c:
        c.sendmail("alice@example.com", ["carol@example.net"],
                   message("alice@example.com", "carol@example.net", "relayed"))
    await wait_for(lambda: len(sink.messages) == 2)
    senders = sorted(m.mail_from for m in sink.messages)
    assert senders == ["alice@example.com", f"rt@{SITE_DOMAIN}"]


async def test_excluded_domain_keeps_its_sender(example_site: Path, sink: Sink) -> None:
    prepare(example_site, sink.port, extra='\n[srs]\nexclude_domains = ["example.com"]\n')
    server = await start(example_site)
    try:
        await asyncio.to_thread(send_from_upstream, server, "alice@sub.example.com",
                                f"neilb@{SITE_DOMAIN}", message("alice@sub.example.com",
                                                                "neilb", "excluded"))
        await wait_for(lambda: len(sink.messages) == 1)
    finally:
        await asyncio.to_thread(server.stop)
    assert sink.messages[0].mail_from == "alice@sub.example.com"


def test_verify_explain_shows_the_rewrite(example_site: Path) -> None:
    r = run("verify", "--explain", "--sender", "alice@example.com", "neilb",
            site=example_site)
    assert r.returncode == 0, r.stderr
    (note,) = [line for line in r.stdout.splitlines() if "(SRS)" in line]
    assert note.startswith("neilb@staffmail.example.ac.uk: forwarded outside: envelope "
                           "sender <alice@example.com> rewritten to <SRS0=")
    r = run("verify", "--explain", "rt", site=example_site)
    assert "SRS" not in r.stdout  # local delivery: nothing rewritten
    r = run("verify", "--explain", "neilb", site=example_site)
    assert "an outside sender becomes SRS0=HASH=TT=domain=local@inf.example.ac.uk" in r.stdout
