"""The list engine end to end through a real ``postroom serve`` and a real SMTP sink:
a member's post reaches every member (VERP sender, List-Id, prefix, footer), a
non-member's post is held and approved with ``postroom held``, a bounce to a member's VERP
address raises its score, subscription by mail with confirmation, DMARC From rewriting
driven by a TXT record of the test DNS server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trustme

from tests.conftest import ThreadedDns, run
from tests.serve.test_reload import route_to
from tests.server import INBOUND_IP, Server, configure_site
from tests.sinks import Received, Sink
from tests.smtp.smtp_client import client

LIST = "physics@inf.example.ac.uk"
MEMBERS = ["ann@example.net", "bob@example.org", "cy@example.com"]


async def wait_for(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def ok(*args: str, site: Path) -> str:
    r = run(*args, site=site)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def served(example_site: Path, sink: Sink, request: pytest.FixtureRequest
                 ) -> AsyncIterator[tuple[Path, Server]]:
    """A serve of the example site with the list physics (three members) on each store:
    the default SQLite file, and a real PostgreSQL (a fresh schema)."""
    site = example_site
    configure_site(site, trustme.CA())
    route_to(site, sink.port)
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        with (site / "postroom.toml").open("a") as f:
            f.write(f'\n[database]\nurl = "{url}"\n')
    in_process(site, ("db", "upgrade"),
               ("lists", "create", LIST, "--owner", "owner@example.net"),
               ("lists", "set", LIST, "subject_prefix=[physics] ", "footer=Physics list footer"),
               ("members", "add", LIST, *MEMBERS))
    server = await asyncio.to_thread(lambda: Server(site, workers=2).start())
    yield site, server
    await asyncio.to_thread(server.stop)


def in_process(site: Path, *commands: tuple[str, ...]) -> None:
    """Set-up commands, run by the command line's own code in this process: a `postroom`
    start costs half a second, and these commands have tests of their own
    (tests/lists/test_lists_cli.py, test_members_cli.py)."""
    from click.testing import CliRunner

    from postroom.cli import cli

    for args in commands:
        r = CliRunner().invoke(cli, [*args, "--site", str(site)], prog_name="postroom",
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output


def send(server: Server, sender: str, rcpt: str, body: bytes) -> None:
    with client(server.ports["mx"], INBOUND_IP) as c:
        c.sendmail(sender, [rcpt], body)


def parsed(m: Received) -> email.message.EmailMessage:
    msg = email.message_from_bytes(m.content, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def post(sender: str, subject: str, to: str = LIST) -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n\r\n"
            f"Hello physics.\r\n").encode()


async def test_member_post_reaches_every_member_decorated_with_verp(
        served: tuple[Path, Server], sink: Sink) -> None:
    site, server = served
    await asyncio.to_thread(send, server, "ann@example.net", LIST,
                            post("ann@example.net", "first post"))
    await wait_for(lambda: len(sink.messages) == 3)
    by_rcpt = {m.rcpt_tos[0]: m for m in sink.messages}
    assert sorted(by_rcpt) == sorted(MEMBERS)
    for member, m in by_rcpt.items():
        user, domain = member.split("@")
        assert m.mail_from == f"physics-bounces+{user}={domain}@inf.example.ac.uk"
        msg = parsed(m)
        assert msg["Subject"] == "[physics] first post"
        assert msg["From"] == "ann@example.net"  # example.net publishes no DMARC
        assert msg["List-Id"].endswith("<physics.inf.example.ac.uk>")
        assert msg["List-Post"] == f"<mailto:{LIST}>"
        assert "physics-leave@inf.example.ac.uk" in msg["List-Unsubscribe"]
        assert "Physics list footer" in msg.get_content()
    month = time.strftime("%Y-%m")
    mbox = site / "archives" / LIST / f"{month}.mbox"
    assert mbox.read_bytes().count(b"\nSubject: [physics] first post") == 1


async def test_non_member_post_is_held_then_approved(served: tuple[Path, Server],
                                                     sink: Sink) -> None:
    site, server = served
    await asyncio.to_thread(send, server, "stranger@example.net", LIST,
                            post("stranger@example.net", "spam or not"))
    # the owner is told; nobody else gets anything
    await wait_for(lambda: any(m.rcpt_tos == ["owner@example.net"] for m in sink.messages))
    assert not [m for m in sink.messages if m.rcpt_tos[0] in MEMBERS]
    listing = await asyncio.to_thread(ok, "held", "list", site=site)
    (line,) = listing.splitlines()
    held_id, list_address, *_, why = line.split("\t")
    assert list_address == LIST and "non-member" in why
    out = await asyncio.to_thread(ok, "held", "approve", held_id, site=site)
    assert f"{held_id}: approved; queued as" in out
    # the running server fanned it out (paced like any post), not the command
    (queued,) = [line for line in (site / "log/mail.log").read_text().splitlines()
                 if "post from <stranger@example.net> queued as" in line]
    assert f"postroom[{server.proc.pid}]:" in queued
    await wait_for(lambda: len([m for m in sink.messages if m.rcpt_tos[0] in MEMBERS]) == 3)
    assert "no held posts" in await asyncio.to_thread(ok, "held", "list", site=site)
    again = await asyncio.to_thread(run, "held", "approve", held_id, site=site)
    assert again.returncode != 0 and f"no held post {held_id}" in again.stderr


async def test_bounce_to_verp_address_raises_the_members_score(
        served: tuple[Path, Server]) -> None:
    site, server = served
    dsn = (b"From: MAILER-DAEMON@example.org\r\nTo: physics-bounces@inf.example.ac.uk\r\n"
           b"Subject: Undelivered Mail\r\n\r\nUser unknown.\r\n")
    await asyncio.to_thread(send, server, "",
                            "physics-bounces+bob=example.org@inf.example.ac.uk", dsn)
    log = site / "log/mail.log"
    await wait_for(lambda: "bounce for <bob@example.org>, score 1" in log.read_text())
    listing = await asyncio.to_thread(ok, "members", "list", LIST, site=site)
    (bob,) = [line for line in listing.splitlines() if "bob@example.org" in line]
    assert re.search(r"\b1(\.0)?\b", bob)


async def test_subscribe_by_mail_with_confirmation(served: tuple[Path, Server],
                                                   sink: Sink) -> None:
    site, server = served
    await asyncio.to_thread(send, server, "dee@example.net", "physics-join@inf.example.ac.uk",
                            b"Subject: join\r\n\r\nplease\r\n")
    await wait_for(lambda: any(m.rcpt_tos == ["dee@example.net"] for m in sink.messages))
    (ask,) = [parsed(m) for m in sink.messages if m.rcpt_tos == ["dee@example.net"]]
    confirm_at = ask["Reply-To"]
    assert re.fullmatch(r"physics-confirm\+[0-9a-z.]+@inf\.example\.ac\.uk", confirm_at)
    listing = await asyncio.to_thread(ok, "members", "list", LIST, site=site)
    assert "dee@example.net" not in listing  # not before confirming
    await asyncio.to_thread(send, server, "dee@example.net", confirm_at,
                            b"Subject: Re: confirm\r\n\r\nyes\r\n")
    await wait_for(lambda: sum(m.rcpt_tos == ["dee@example.net"] for m in sink.messages) == 2)
    listing = await asyncio.to_thread(ok, "members", "list", LIST, site=site)
    assert "dee@example.net" in listing
    # a forged token does nothing
    await asyncio.to_thread(send, server, "eve@example.net",
                            "physics-confirm+1.deadbeef@inf.example.ac.uk", b"\r\nyes\r\n")
    await asyncio.sleep(1.0)
    assert "eve@example.net" not in await asyncio.to_thread(ok, "members", "list", LIST,
                                                            site=site)


async def test_dmarc_reject_author_domain_gets_the_from_rewritten(
        served: tuple[Path, Server], sink: Sink, dns_server: ThreadedDns) -> None:
    _, server = served
    dns_server.server.set("_dmarc.example.com", "TXT", ['"v=DMARC1; p=reject"'])
    try:
        await asyncio.to_thread(send, server, "cy@example.com", LIST,
                                post("cy@example.com", "strict domain"))
        await wait_for(lambda: len(sink.messages) == 3)
    finally:
        dns_server.server.remove("_dmarc.example.com")
    msg = parsed(sink.messages[0])
    assert msg["From"].addresses[0].addr_spec == LIST
    assert "cy@example.com" in str(msg["Reply-To"]) + str(msg["Cc"])


async def test_mailman_pipe_alias_and_the_examples_list_alias(served: tuple[Path, Server],
                                                              sink: Sink) -> None:
    """A sendmail site's ``"|/var/mailman/mail/mailman post sys-announce"`` alias goes to the
    engine (``verify`` still prints the pipe); ``postie`` reaches services-unit."""
    site, server = served
    out = run("verify", "sys-announce", site=site).stdout
    assert '"|/var/mailman/mail/mailman post sys-announce"... deliverable: mailer prog' in out
    ok("lists", "create", "sys-announce@inf.example.ac.uk", site=site)
    ok("lists", "set", "sys-announce@inf.example.ac.uk", "posting_policy=open", site=site)
    ok("members", "add", "sys-announce@inf.example.ac.uk", "ann@example.net", site=site)
    if "services-unit@" not in ok("lists", "list", site=site):
        # `postroom init --example` made it in the SQLite store; a PostgreSQL store is new
        ok("lists", "create", "services-unit@lists.inf.example.ac.uk", site=site)
    ok("members", "add", "services-unit@lists.inf.example.ac.uk", "bob@example.org",
       site=site)
    ok("lists", "set", "services-unit@lists.inf.example.ac.uk", "posting_policy=open",
       "acceptable_aliases=postie@inf.example.ac.uk", site=site)
    await asyncio.to_thread(send, server, "it@example.net", "sys-announce@inf.example.ac.uk",
                            post("it@example.net", "maintenance tonight",
                                 "sys-announce@inf.example.ac.uk"))
    await asyncio.to_thread(send, server, "it@example.net", "postie@inf.example.ac.uk",
                            post("it@example.net", "for postie", "postie@inf.example.ac.uk"))
    await wait_for(lambda: len(sink.messages) == 2)
    got = {m.rcpt_tos[0]: parsed(m) for m in sink.messages}
    assert got["ann@example.net"]["List-Id"].endswith("<sys-announce.inf.example.ac.uk>")
    assert got["bob@example.org"]["List-Id"].endswith(
        "<services-unit.lists.inf.example.ac.uk>")
