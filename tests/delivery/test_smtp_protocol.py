"""The SMTP client's protocol against a scripted raw asyncio server on 127.0.0.1: the
reply parser, multi-line replies, pipelined and lock-step transactions, a 4xx on one
RCPT, and a connection dropped in the middle of the message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from postroom.delivery.mx import MxResolver, parse_destination
from postroom.delivery.smtp_client import Policy, SmtpClient, parse_reply
from postroom.types import Attempt, Outcome
from tests.delivery.conftest import MESSAGE, make_job
from tests.dnsserver import DnsServer

# the scripted server decides what it offers: one run of each test is enough
pytestmark = pytest.mark.pipelining_only


@pytest.mark.parametrize(("code", "message", "expected"), [
    (250, "2.0.0 Ok: queued as X", ("2.0.0", "Ok: queued as X")),
    (250, "2.1.5 first line\n2.1.5 second line", ("2.1.5", "first line second line")),
    (550, "No such user", ("5.0.0", "No such user")),
    (451, "5.7.1 class disagrees", ("4.7.1", "class disagrees")),
    (250, "", ("2.0.0", "")),
    (0, "garbage", ("4.0.0", "garbage")),
])
def test_parse_reply(code: int, message: str, expected: tuple[str, str]) -> None:
    assert parse_reply(code, message) == expected


class Peer:
    """A raw SMTP server: replies per verb (RCPT per address), optionally PIPELINING, and
    a drop after the first bytes of the message. ``chunks`` are its reads of commands."""

    def __init__(self, *, pipelining: bool, rcpt: dict[bytes, bytes] | None = None,
                 final: bytes = b"250-2.0.0 Ok\r\n250 2.0.0 queued as S1\r\n",
                 drop_in_data: bool = False, idle_421: bool = False) -> None:
        self.pipelining = pipelining
        self.idle_421 = idle_421  # after each message: "421" unasked, then hang up
        self.connections = 0
        self.rcpt = rcpt or {}
        self.final = final
        self.drop_in_data = drop_in_data
        self.chunks: list[bytes] = []
        self.commands: list[bytes] = []
        self.messages: list[bytes] = []
        self.partial = b""

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._session(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220-peer.test ESMTP\r\n220 scripted\r\n")
        buf, accepted = b"", 0
        while chunk := await reader.read(65536):
            self.chunks.append(chunk)
            buf += chunk
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                self.commands.append(line)
                verb = line.split(b" ", 1)[0].upper()
                if verb == b"EHLO":
                    writer.write(b"250-peer.test\r\n250-SIZE 1000000\r\n"
                                 + b"250-PIPELINING\r\n" * self.pipelining + b"250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    accepted = 0
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    address = line.split(b"<", 1)[1].split(b">", 1)[0]
                    reply = self.rcpt.get(address, b"250 2.1.5 Ok\r\n")
                    accepted += reply.startswith(b"2")
                    writer.write(reply)
                elif verb == b"DATA" and not accepted:
                    writer.write(b"503 5.5.1 No valid recipients\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 Go ahead\r\n")
                    while b"\r\n.\r\n" not in buf:
                        more = await reader.read(65536)
                        if not more:
                            return
                        buf += more
                        if self.drop_in_data:
                            self.partial = buf
                            writer.transport.abort()
                            return
                    message, buf = buf.split(b"\r\n.\r\n", 1)
                    self.messages.append(message + b"\r\n")
                    writer.write(self.final)
                    if self.idle_421:
                        await asyncio.sleep(0.05)
                        writer.write(b"421 4.4.2 peer.test idle too long\r\n")
                        await writer.drain()
                        await asyncio.sleep(0.05)
                        return
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"250 2.0.0 Ok\r\n")


@pytest.fixture
async def serve() -> AsyncIterator[list[asyncio.Server]]:
    servers: list[asyncio.Server] = []
    yield servers
    for s in servers:
        s.close()
        await s.wait_closed()


async def listen(peer: Peer, servers: list[asyncio.Server]) -> int:
    server = await asyncio.start_server(peer.session, "127.0.0.1", 0)
    servers.append(server)
    port: int = server.sockets[0].getsockname()[1]
    return port


def smtp_client(dns: DnsServer) -> SmtpClient:
    return SmtpClient(hostname="client.test", resolver=MxResolver([dns.nameserver], timeout=2),
                      connect_timeout=2, command_timeout=2)


async def send(client: SmtpClient, port: int, users: list[str]) -> list[Attempt]:
    job = make_job("esmtp", f"[127.0.0.1]:{port}", users)
    return await client.deliver(job, parse_destination(job.host), Policy(port=port, tls="never"))


async def deliver(peer: Peer, servers: list[asyncio.Server], dns: DnsServer,
                  users: list[str]) -> list[Attempt]:
    port = await listen(peer, servers)
    client = smtp_client(dns)
    try:
        return await send(client, port, users)
    finally:
        await client.aclose()


def unstuffed(message: bytes) -> bytes:
    return message.replace(b"\r\n..", b"\r\n.")


async def test_pipelined_transaction_with_a_4xx_on_one_rcpt(
        dns: DnsServer, serve: list[asyncio.Server]) -> None:
    peer = Peer(pipelining=True, rcpt={b"busy@example.test": b"452-4.2.2 Mailbox full\r\n"
                                                             b"452 4.2.2 try later\r\n"})
    attempts = await deliver(peer, serve, dns, ["b@example.test", "busy@example.test",
                                                "c@example.test"])
    assert [a.outcome for a in attempts] == [Outcome.SENT, Outcome.DEFERRED, Outcome.SENT]
    busy = attempts[1]
    assert (busy.code, busy.status, busy.text) == (452, "4.2.2", "Mailbox full try later")
    sent = attempts[0]
    assert (sent.code, sent.status, sent.text) == (250, "2.0.0", "Ok queued as S1")
    assert sent.remote == "127.0.0.1 [127.0.0.1]"
    # MAIL, every RCPT and DATA in one write, before any reply
    batch = next(c for c in peer.chunks if c.startswith(b"MAIL"))
    assert batch.count(b"\r\n") == 5 and batch.endswith(b"DATA\r\n")
    assert b"SIZE=" in batch
    assert [unstuffed(m) for m in peer.messages] == [MESSAGE]


async def test_lock_step_without_pipelining(dns: DnsServer,
                                            serve: list[asyncio.Server]) -> None:
    peer = Peer(pipelining=False, rcpt={b"nobody@example.test": b"550 5.1.1 No such user\r\n"})
    attempts = await deliver(peer, serve, dns, ["nobody@example.test", "b@example.test"])
    assert [(a.outcome, a.code) for a in attempts] == [(Outcome.FAILED, 550),
                                                        (Outcome.SENT, 250)]
    # one command per write, each after the reply to the one before
    commands = [c for c in peer.chunks if not c.startswith(b"EHLO")]
    assert all(c.count(b"\r\n") == 1 for c in commands), commands
    verbs = [c.split(b" ", 1)[0].split(b":", 1)[0] for c in peer.commands]
    assert verbs == [b"EHLO", b"MAIL", b"RCPT", b"RCPT", b"DATA", b"QUIT"]
    assert [unstuffed(m) for m in peer.messages] == [MESSAGE]


async def test_every_rcpt_refused_sends_no_message(dns: DnsServer,
                                                   serve: list[asyncio.Server]) -> None:
    peer = Peer(pipelining=True, rcpt={b"nobody@example.test": b"550 5.1.1 No such user\r\n"})
    [a] = await deliver(peer, serve, dns, ["nobody@example.test"])
    assert (a.outcome, a.code, a.status) == (Outcome.FAILED, 550, "5.1.1")
    assert peer.messages == []


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "lock-step"])
async def test_connection_dropped_mid_data_defers(dns: DnsServer, serve: list[asyncio.Server],
                                                  pipelining: bool) -> None:
    peer = Peer(pipelining=pipelining, drop_in_data=True)
    attempts = await deliver(peer, serve, dns, ["b@example.test", "c@example.test"])
    for a in attempts:
        assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.4.2")
        assert "while sending the message" in a.text
    assert peer.partial and peer.messages == []


async def test_421_on_a_rcpt_ends_the_session(dns: DnsServer,
                                              serve: list[asyncio.Server]) -> None:
    peer = Peer(pipelining=False, rcpt={b"b@example.test": b"421 4.3.2 shutting down\r\n"})
    attempts = await deliver(peer, serve, dns, ["b@example.test", "c@example.test"])
    assert [(a.outcome, a.code) for a in attempts] == [(Outcome.DEFERRED, 421),
                                                        (Outcome.DEFERRED, 451)]
    assert "lost connection" in attempts[1].text and "during RCPT TO" in attempts[1].text
    assert peer.messages == [] and b"QUIT" not in peer.commands


async def test_idle_session_that_the_server_ends_is_not_reused(
        dns: DnsServer, serve: list[asyncio.Server]) -> None:
    """A cached session whose server said 421 and hung up while it was idle: the next
    job connects again instead of reading that 421 as the reply to its MAIL."""
    peer = Peer(pipelining=True, idle_421=True)
    port = await listen(peer, serve)
    client = smtp_client(dns)
    try:
        [a] = await send(client, port, ["b@example.test"])
        assert a.outcome is Outcome.SENT
        await asyncio.sleep(0.2)
        [b] = await send(client, port, ["c@example.test"])
    finally:
        await client.aclose()
    assert b.outcome is Outcome.SENT, b.text
    assert peer.connections == 2 and len(peer.messages) == 2
