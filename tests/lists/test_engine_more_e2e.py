"""More of the list engine through a real ``postroom serve`` and a real sink: digests
(MIME and RFC 1153), a held post decided by the moderator's reply, subscriptions that
need the owner's approval, delivery turned off by bounces and on again by the member's
confirmation, and the cap on confirmation mails to one address."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.lists import test_engine_e2e as base
from tests.lists.test_engine_e2e import LIST, MEMBERS, ok, parsed, post, send, wait_for
from tests.server import Server
from tests.sinks import Sink

served = base.served  # the fixtures: a serve with the list physics, and its sink
sink = base.sink

DIGEST_MIME = "dora@example.net"
DIGEST_PLAIN = "pat@example.org"


def to(sink: Sink, rcpt: str) -> list:  # type: ignore[type-arg]
    return [parsed(m) for m in sink.messages if m.rcpt_tos == [rcpt]]


async def test_digest_members_get_one_digest_with_contents_instead_of_each_post(
        served: tuple[Path, Server], sink: Sink) -> None:
    site, server = served
    ok("members", "add", LIST, "Dora <dora@example.net>", "--digest", site=site)
    ok("members", "add", LIST, DIGEST_PLAIN, "--plain-digest", site=site)
    for n, who in enumerate(("ann@example.net", "bob@example.org"), 1):
        await asyncio.to_thread(send, server, who, LIST, post(who, f"digest post {n}"))
        await wait_for(lambda n=n: len(sink.messages) == n * len(MEMBERS))  # in this order
    assert not to(sink, DIGEST_MIME) and not to(sink, DIGEST_PLAIN)  # no single posts
    out = await asyncio.to_thread(ok, "lists", "digest", LIST, site=site)
    assert "physics Digest, Vol 1, Issue 1, 2 posts" in out
    await wait_for(lambda: bool(to(sink, DIGEST_MIME)) and bool(to(sink, DIGEST_PLAIN)))

    (mime,) = to(sink, DIGEST_MIME)
    assert mime["Subject"] == "physics Digest, Vol 1, Issue 1"
    assert mime["List-Id"] == "<physics.inf.example.ac.uk>"
    intro, digest = mime.iter_parts()
    toc = intro.get_content()
    assert "1. [physics] digest post 1 (ann@example.net)" in toc
    assert "2. [physics] digest post 2 (bob@example.org)" in toc
    assert digest.get_content_type() == "multipart/digest"
    inner = [p.get_content() for p in digest.iter_parts()]
    assert [m["Subject"] for m in inner] == ["[physics] digest post 1",
                                             "[physics] digest post 2"]
    (m1,) = [m for m in sink.messages if m.rcpt_tos == [DIGEST_MIME]]
    assert m1.mail_from == "physics-bounces@inf.example.ac.uk"

    (plain,) = to(sink, DIGEST_PLAIN)
    text = plain.get_content().replace("\r\n", "\n")
    assert plain.get_content_type() == "text/plain"
    assert "Today's Topics:" in text
    assert "Message: 1\nDate:" in text or "Message: 1\nFrom:" in text
    assert "Subject: [physics] digest post 2" in text
    assert "End of physics Digest, Vol 1, Issue 1" in text
    assert text.count("-" * 30 + "\n") >= 2

    # the next digest is issue 2, with only what came after
    await asyncio.to_thread(send, server, "cy@example.com", LIST,
                            post("cy@example.com", "digest post 3"))
    await wait_for(lambda: len(sink.messages) == 3 * len(MEMBERS) + 2)
    await asyncio.to_thread(ok, "lists", "digest", LIST, site=site)
    await wait_for(lambda: len(to(sink, DIGEST_MIME)) == 2)
    second = to(sink, DIGEST_MIME)[1]
    assert second["Subject"] == "physics Digest, Vol 1, Issue 2"
    assert "digest post 3" in second.as_string() and "digest post 1" not in second.as_string()
    assert "no digest pending" in await asyncio.to_thread(ok, "lists", "digest", LIST,
                                                          site=site)


async def test_a_held_post_is_approved_and_another_discarded_by_the_moderators_reply(
        served: tuple[Path, Server], sink: Sink) -> None:
    site, server = served
    await asyncio.to_thread(send, server, "stranger@example.net", LIST,
                            post("stranger@example.net", "please let me in"))
    await wait_for(lambda: bool(to(sink, "owner@example.net")))
    (held_notice,) = to(sink, "owner@example.net")
    decide_at = held_notice["Reply-To"]
    assert re.fullmatch(r"physics-confirm\+[a-z2-7]+@inf\.example\.ac\.uk", decide_at)
    assert "approve" in held_notice.get_content()

    # someone who is not a moderator replies: nothing happens
    await asyncio.to_thread(send, server, "stranger@example.net", decide_at,
                            b"Subject: Re: held\r\n\r\napprove\r\n")
    await asyncio.sleep(1.0)
    assert not [m for m in sink.messages if m.rcpt_tos[0] in MEMBERS]
    assert "ignored: not a moderator" in (site / "log/mail.log").read_text()

    # the owner replies, quoting the notice under a first line "approve"
    reply = (b"From: owner@example.net\r\nSubject: Re: held\r\n\r\napprove\r\n\r\n"
             b"> A post to physics is held\r\n")
    await asyncio.to_thread(send, server, "owner@example.net", decide_at, reply)
    await wait_for(lambda: len([m for m in sink.messages if m.rcpt_tos[0] in MEMBERS]) == 3)
    assert "no held posts" in await asyncio.to_thread(ok, "held", "list", site=site)

    # a second held post, discarded by reply: the sender hears nothing, members get nothing
    await asyncio.to_thread(send, server, "spammer@example.net", LIST,
                            post("spammer@example.net", "buy now"))
    await wait_for(lambda: len(to(sink, "owner@example.net")) == 2)
    decide_at = to(sink, "owner@example.net")[1]["Reply-To"]
    await asyncio.to_thread(send, server, "owner@example.net", decide_at,
                            b"Subject: Re: held\r\n\r\ndiscard\r\n")
    await wait_for(lambda: "no held posts" in ok("held", "list", site=site))
    await asyncio.sleep(0.5)
    assert len([m for m in sink.messages if m.rcpt_tos[0] in MEMBERS]) == 3
    assert not to(sink, "spammer@example.net")


async def test_subscription_waits_for_the_owners_approval(served: tuple[Path, Server],
                                                          sink: Sink) -> None:
    site, server = served
    ok("lists", "set", LIST, "subscription_needs_approval=true", site=site)
    await asyncio.to_thread(send, server, "dee@example.net", "physics-join@inf.example.ac.uk",
                            b"Subject: join\r\n\r\nplease\r\n")
    await wait_for(lambda: bool(to(sink, "dee@example.net")))
    await asyncio.to_thread(send, server, "dee@example.net",
                            to(sink, "dee@example.net")[0]["Reply-To"], b"\r\nyes\r\n")
    await wait_for(lambda: bool(to(sink, "owner@example.net")))
    # "the owners approve new members": sent with the owners' mail, so either comes first
    await wait_for(lambda: len(to(sink, "dee@example.net")) == 2)
    assert "dee@example.net" not in ok("members", "list", LIST, site=site)
    (ask,) = to(sink, "owner@example.net")
    assert ask["Subject"] == f"{LIST}: subscription of dee@example.net to approve"
    # dee cannot approve herself with the owner's token
    await asyncio.to_thread(send, server, "dee@example.net", ask["Reply-To"], b"\r\nok\r\n")
    await asyncio.sleep(1.0)
    assert "dee@example.net" not in ok("members", "list", LIST, site=site)
    await asyncio.to_thread(send, server, "owner@example.net", ask["Reply-To"], b"\r\nok\r\n")
    await wait_for(lambda: "dee@example.net" in ok("members", "list", LIST, site=site))
    await wait_for(lambda: any(m["Subject"] == f"Welcome to {LIST}"
                               for m in to(sink, "dee@example.net")))


async def test_bounces_turn_delivery_off_and_the_members_confirmation_turns_it_on(
        served: tuple[Path, Server], sink: Sink) -> None:
    site, server = served
    dsn = (b"From: MAILER-DAEMON@example.org\r\nSubject: Undelivered Mail\r\n\r\n"
           b"Mailbox full.\r\n")
    for _ in range(5):
        await asyncio.to_thread(send, server, "",
                                "physics-bounces+bob=example.org@inf.example.ac.uk", dsn)
    await wait_for(lambda: bool(to(sink, "bob@example.org")) and bool(to(sink,
                                                                         "owner@example.net")))
    (told,) = to(sink, "bob@example.org")
    assert told["Subject"] == f"Your delivery from {LIST} is turned off"
    assert "bob@example.org" in to(sink, "owner@example.net")[0]["Subject"]
    (bob,) = [line for line in ok("members", "list", LIST, site=site).splitlines()
              if "bob@example.org" in line]
    assert " off " in f" {bob} " or "\toff\t" in bob or "off" in bob.split()
    # a post now goes to the two others only
    await asyncio.to_thread(send, server, "ann@example.net", LIST,
                            post("ann@example.net", "while bob bounces"))
    await wait_for(lambda: len([m for m in sink.messages
                                if m.rcpt_tos[0] in ("ann@example.net", "cy@example.com")]) == 2)
    await asyncio.sleep(0.5)
    assert len(to(sink, "bob@example.org")) == 1
    # bob's mailbox works again; he confirms
    await asyncio.to_thread(send, server, "bob@example.org", told["Reply-To"], b"\r\nback\r\n")
    await wait_for(lambda: len(to(sink, "bob@example.org")) == 2)
    assert to(sink, "bob@example.org")[1]["Subject"] == f"Delivery from {LIST} is on again"
    await asyncio.to_thread(send, server, "ann@example.net", LIST,
                            post("ann@example.net", "bob is back"))
    await wait_for(lambda: any(m["Subject"] == "[physics] bob is back"
                               for m in to(sink, "bob@example.org")))


async def test_no_more_than_three_confirmation_mails_a_day_to_one_address(
        served: tuple[Path, Server], sink: Sink) -> None:
    site, server = served
    log = site / "log/mail.log"
    for n in range(5):
        await asyncio.to_thread(send, server, "victim@example.net",
                                "physics-join@inf.example.ac.uk", b"Subject: join\r\n\r\nx\r\n")
        await wait_for(lambda n=n: log.read_text().count("request for <victim@example.net>")
                       == n + 1)
        await asyncio.sleep(1.0)  # a request repeated within a second is one request
    assert log.read_text().count("3 requests already today") == 2
    await wait_for(lambda: len(to(sink, "victim@example.net")) == 3)
    await asyncio.sleep(0.5)
    assert len(to(sink, "victim@example.net")) == 3
