"""A message the server accepted is reported the moment its reply arrives, from the
connection's stream, not when the waiting task next runs (``chat.ReplyStream``): the
runner journals it there, so a crash just after a 250 repeats as few messages as it can.
Against real sockets on 127.0.0.1: a scripted peer, and postroom's SMTP client."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from postroom.delivery.mx import parse_destination
from postroom.delivery.smtp.chat import Disconnected, Reply, ReplyReader, open_stream
from postroom.delivery.smtp_client import Policy
from postroom.envelope import Delivery
from postroom.types import Outcome
from tests.delivery.conftest import make_job
from tests.delivery.test_smtp_protocol import Peer, listen, smtp_client
from tests.dnsserver import DnsServer

pytestmark = pytest.mark.pipelining_only


class Writer:
    """A raw peer whose writes the test makes, one at a time."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None

    async def session(self, _reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connected.set()

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()


@pytest.fixture
async def stream(serve: list[asyncio.Server]) -> AsyncIterator[tuple[Writer, ReplyReader]]:
    peer = Writer()
    server = await asyncio.start_server(peer.session, "127.0.0.1", 0)
    serve.append(server)
    reader, writer = await open_stream("127.0.0.1", server.sockets[0].getsockname()[1])
    await peer.connected.wait()
    yield peer, ReplyReader(reader)
    writer.close()
    assert peer.writer is not None
    peer.writer.close()


async def wait(event: asyncio.Event) -> None:
    async with asyncio.timeout(5):
        await event.wait()


async def test_the_next_reply_is_reported_with_no_task_reading(
        stream: tuple[Writer, ReplyReader]) -> None:
    peer, replies = stream
    got: list[Reply] = []
    arrived = asyncio.Event()

    def on_reply(reply: Reply) -> None:
        got.append(reply)
        arrived.set()

    replies.on_next(on_reply)
    await peer.send(b"250-2.0.0 Ok\r\n")  # half a reply: not yet
    await asyncio.sleep(0.05)
    assert got == []
    await peer.send(b"250 2.0.0 queued as S1\r\n354 next\r\n")
    await wait(arrived)  # nobody called reply(): the stream itself reported it
    assert got == [Reply(250, "2.0.0 Ok\n2.0.0 queued as S1")]
    # the task reads the same reply, then the next one, which is not reported
    assert await replies.reply(2) == got[0]
    assert await replies.reply(2) == Reply(354, "next")
    assert len(got) == 1


async def test_no_report_of_a_reply_behind_unread_bytes_or_garbage(
        stream: tuple[Writer, ReplyReader]) -> None:
    peer, replies = stream
    got: list[Reply] = []
    await peer.send(b"220 unread greeting\r\n")
    await asyncio.sleep(0.05)
    replies.on_next(got.append)  # the next reply is the greeting already here
    await peer.send(b"250 Ok\r\n")
    await asyncio.sleep(0.05)
    assert got == []
    assert await replies.reply(2) == Reply(220, "unread greeting")
    assert await replies.reply(2) == Reply(250, "Ok")
    replies.on_next(got.append)
    await peer.send(b"xyz not smtp\r\n")
    with pytest.raises(Disconnected):
        await replies.reply(2)
    assert got == []


async def test_no_report_when_replies_were_read_ahead(
        stream: tuple[Writer, ReplyReader]) -> None:
    """A server out of step: a reply read ahead of what was asked would be the task's next,
    so the one arriving after it must not be reported as the answer."""
    peer, replies = stream
    got: list[Reply] = []
    await peer.send(b"554 5.6.0 refused\r\n250 2.0.0 early\r\n")
    assert await replies.reply(2) == Reply(554, "5.6.0 refused")
    replies.on_next(got.append)  # "250 early" is read already, not taken
    await peer.send(b"250 2.0.0 late\r\n")
    await asyncio.sleep(0.05)
    assert got == []
    assert await replies.reply(2) == Reply(250, "2.0.0 early")


async def test_no_report_of_a_reply_longer_than_the_task_takes(
        stream: tuple[Writer, ReplyReader]) -> None:
    peer, replies = stream
    got: list[Reply] = []
    replies.on_next(got.append)
    await peer.send((b"250-" + b"y" * 1000 + b"\r\n") * 70 + b"250 2.0.0 queued\r\n")
    with pytest.raises(Disconnected):
        await replies.reply(2)
    assert got == []


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "lock-step"])
async def test_the_client_reports_each_accepted_recipient_as_the_reply_arrives(
        dns: DnsServer, serve: list[asyncio.Server], pipelining: bool) -> None:
    peer = Peer(pipelining=pipelining, rcpt={b"nobody@example.test": b"550 5.1.1 No\r\n"})
    port = await listen(peer, serve)
    job = make_job("esmtp", f"[127.0.0.1]:{port}",
                   ["a@example.test", "nobody@example.test", "b@example.test"])
    reported: list[tuple[str, str]] = []

    def progress(d: Delivery, reply: str) -> None:
        reported.append((d.user, reply))

    job.progress = progress
    client = smtp_client(dns)
    try:
        attempts = await client.deliver(job, parse_destination(job.host),
                                        Policy(port=port, tls="never"))
    finally:
        await client.aclose()
    assert [a.outcome for a in attempts] == [Outcome.SENT, Outcome.FAILED, Outcome.SENT]
    assert reported[:2] == [("a@example.test", "250 2.0.0 Ok queued as S1"),
                            ("b@example.test", "250 2.0.0 Ok queued as S1")]
    # reported twice each: as the reply arrived, and by the courier once it had read it
    # (the runner journals the first)
    assert Counter(u for u, _ in reported) == {"a@example.test": 2, "b@example.test": 2}


async def test_a_refused_message_is_not_reported(dns: DnsServer,
                                                 serve: list[asyncio.Server]) -> None:
    peer = Peer(pipelining=True, final=b"554 5.6.0 refused\r\n")
    port = await listen(peer, serve)
    job = make_job("esmtp", f"[127.0.0.1]:{port}", ["a@example.test"])
    reported: list[str] = []
    job.progress = lambda d, reply: reported.append(reply)
    client = smtp_client(dns)
    try:
        [a] = await client.deliver(job, parse_destination(job.host),
                                   Policy(port=port, tls="never"))
    finally:
        await client.aclose()
    assert (a.outcome, a.code) == (Outcome.FAILED, 554)
    assert reported == []
