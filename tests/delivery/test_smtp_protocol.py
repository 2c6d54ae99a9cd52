"""The SMTP client's protocol against a scripted raw asyncio server on 127.0.0.1: the
reply parser, multi-line replies, pipelined and lock-step transactions, a 4xx on one
RCPT, and a connection dropped in the middle of the message."""

from __future__ import annotations

import asyncio

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
        self.data_chunks: list[bytes] = []  # its reads after a 354
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
                        self.data_chunks.append(more)
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


def personalised(port: int, users: list[str]):  # type: ignore[no-untyped-def]
    """A list post's job: each recipient gets a copy of their own, with their own sender."""
    job = make_job("esmtp", f"[127.0.0.1]:{port}", users)
    job.render = lambda d: (f"list-bounces+{d.user.split('@')[0]}@example.test",
                            MESSAGE.replace(b"\r\n\r\n", f"\r\nX-Member: {d.user}\r\n\r\n".encode(),
                                            1))
    return job


async def deliver_copies(peer: Peer, servers: list[asyncio.Server], dns: DnsServer,
                         users: list[str], rendered: list[str] | None = None) -> list[Attempt]:
    """``rendered``: the users whose copies were made, in order."""
    port = await listen(peer, servers)
    client = smtp_client(dns)
    try:
        job = personalised(port, users)
        if rendered is not None:
            render = job.render
            assert render is not None

            def counted(d):  # type: ignore[no-untyped-def]
                rendered.append(d.user)
                return render(d)
            job.render = counted
        return await client.deliver(job, parse_destination(job.host),
                                    Policy(port=port, tls="never"))
    finally:
        await client.aclose()


async def test_personalised_copies_send_each_end_with_the_next_transaction(
        dns: DnsServer, serve: list[asyncio.Server]) -> None:
    """RFC 2920 3.1: a copy's end, then the next copy's MAIL, RCPT and DATA, in one write:
    one round trip a copy."""
    peer = Peer(pipelining=True)
    users = ["a@example.test", "b@example.test", "c@example.test"]
    attempts = await deliver_copies(peer, serve, dns, users)
    assert [a.outcome for a in attempts] == [Outcome.SENT] * 3
    assert [m.split(b"X-Member: ")[1].split(b"\r\n")[0].decode() for m in peer.messages] == users
    senders = [c for c in peer.commands if c.startswith(b"MAIL")]
    assert [s.split(b">")[0] for s in senders] == [
        b"MAIL FROM:<list-bounces+a@example.test", b"MAIL FROM:<list-bounces+b@example.test",
        b"MAIL FROM:<list-bounces+c@example.test"]
    chained = [c for c in peer.data_chunks if b"\r\n.\r\nMAIL FROM:" in c]
    assert len(chained) == 2  # the ends of the first two copies
    assert b"RSET" not in peer.commands


async def test_a_refused_copy_breaks_the_chain_and_the_next_starts_with_rset(
        dns: DnsServer, serve: list[asyncio.Server]) -> None:
    peer = Peer(pipelining=True, rcpt={b"b@example.test": b"550 5.1.1 No such user\r\n"})
    users = ["a@example.test", "b@example.test", "c@example.test"]
    rendered: list[str] = []
    attempts = await deliver_copies(peer, serve, dns, users, rendered)
    assert rendered == users  # c's copy, made for the chain, was not made again
    assert [(a.outcome, a.code) for a in attempts] == [
        (Outcome.SENT, 250), (Outcome.FAILED, 550), (Outcome.SENT, 250)]
    assert len(peer.messages) == 2
    verbs = [c.split(b" ", 1)[0].split(b":", 1)[0] for c in peer.commands]
    # b's transaction was left open (its MAIL accepted): c's begins with RSET
    assert verbs == [b"EHLO", b"MAIL", b"RCPT", b"DATA", b"MAIL", b"RCPT", b"DATA",
                     b"RSET", b"MAIL", b"RCPT", b"DATA", b"QUIT"]


async def test_a_server_gone_after_a_copy_defers_the_copy_sent_ahead(
        dns: DnsServer, serve: list[asyncio.Server]) -> None:
    """The server says 421 and hangs up after the first copy, with the second copy's
    commands already sent: that copy is deferred, never counted sent; the third goes on
    a new connection."""
    peer = Peer(pipelining=True, idle_421=True)
    attempts = await deliver_copies(peer, serve, dns,
                                    ["a@example.test", "b@example.test", "c@example.test"])
    assert attempts[0].outcome is Outcome.SENT
    assert attempts[1].outcome is Outcome.DEFERRED and attempts[1].code in (421, 451)
    sent = [u for u, a in zip(["a", "b", "c"], attempts, strict=True)
            if a.outcome is Outcome.SENT]
    got = [m.split(b"X-Member: ")[1].split(b"@")[0].decode() for m in peer.messages]
    assert sent == got  # every copy counted sent is one the server has, and only those


async def test_a_session_with_a_reply_nobody_asked_for_is_not_reused(
        dns: DnsServer, serve: list[asyncio.Server]) -> None:
    """The server answers the message's end with one reply too many: the client has read
    it with the real one, and a session out of step is closed, not kept for the next
    message (whose MAIL would be answered by the stray reply)."""
    peer = Peer(pipelining=True, final=b"250 2.0.0 queued as S1\r\n250 2.0.0 unasked\r\n")
    port = await listen(peer, serve)
    client = smtp_client(dns)
    try:
        [a] = await send(client, port, ["a@example.test"])
        [b] = await send(client, port, ["b@example.test"])
    finally:
        await client.aclose()
    assert (a.outcome, b.outcome) == (Outcome.SENT, Outcome.SENT)
    assert "queued as S1" in a.text and "unasked" not in b.text
    assert peer.connections == 2


async def test_more_than_the_220_to_starttls_fails_the_tls(
        dns: DnsServer, serve: list[asyncio.Server]) -> None:
    """Lines after the 220 that came before the handshake could be injected by a man in
    the middle and would be read as if sent under TLS: the client gives up on the
    session (with TLS required, the message is deferred and says why)."""
    commands: list[bytes] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 peer.test ESMTP\r\n")
        while line := await reader.readline():
            commands.append(line.strip())
            if line.upper().startswith(b"EHLO"):
                writer.write(b"250-peer.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            elif line.upper().startswith(b"STARTTLS"):
                writer.write(b"220 2.0.0 go ahead\r\n250 2.1.0 injected\r\n")
            else:
                writer.write(b"250 2.0.0 Ok\r\n")
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    serve.append(server)
    port = server.sockets[0].getsockname()[1]
    client = smtp_client(dns)
    try:
        job = make_job("esmtp", f"[127.0.0.1]:{port}", ["a@example.test"])
        [a] = await client.deliver(job, parse_destination(job.host),
                                   Policy(port=port, tls="required"))
    finally:
        await client.aclose()
    assert a.outcome is Outcome.DEFERRED
    assert "sent more than its 220 reply to STARTTLS" in a.text
    assert not any(c.startswith(b"MAIL") for c in commands)
