"""The esmtp courier against real SMTP sinks and a real DNS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trustme

from postroom.delivery.esmtp import EsmtpCourier
from postroom.envelope import RcptState
from postroom.types import Outcome
from tests.delivery.conftest import MESSAGE, SENDER, SiteFactory, make_job
from tests.dnsserver import DnsServer
from tests.sinks import Sink, server_tls

MX1 = "mx1.example.test"
Couriers = Callable[..., EsmtpCourier]


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


@pytest.fixture
async def esmtp(make_site: SiteFactory, dns: DnsServer) -> AsyncIterator[Couriers]:
    """``esmtp(port, delivery={...}, idle_timeout=...)``: a courier for a site whose MX
    deliveries go to ``port`` and whose resolver is the test DNS server."""
    made: list[EsmtpCourier] = []

    def build(port: int, *, delivery: dict[str, Any] | None = None,
              queue: dict[str, Any] | None = None, idle_timeout: float = 5.0) -> EsmtpCourier:
        site = make_site(delivery={"smtp_port": port, "connect_timeout": 5,
                                   "command_timeout": 10, **(delivery or {})},
                         dns={"nameservers": [dns.nameserver], "timeout": 2}, queue=queue)
        courier = EsmtpCourier(site, idle_timeout=idle_timeout)
        made.append(courier)
        return courier

    yield build
    for c in made:
        await c.aclose()


@pytest.fixture
def zone(dns: DnsServer) -> DnsServer:
    dns.set("example.test", "MX", [(10, MX1)])
    dns.set(MX1, "A", ["127.0.0.1"])
    return dns


async def test_delivers_by_mx(zone: DnsServer, sink: Sink, esmtp: Couriers) -> None:
    job = make_job("esmtp", "example.test", ["bob@example.test", "carol@example.test"])
    attempts = await esmtp(sink.port).deliver(job)
    assert [a.outcome for a in attempts] == [Outcome.SENT, Outcome.SENT]
    a = attempts[0]
    assert (a.code, a.status, a.text) == (250, "2.0.0", "Ok: queued as M1")
    assert a.reply == "250 2.0.0 Ok: queued as M1"
    assert a.remote == f"{MX1} [127.0.0.1]"
    assert [a.delivery for a in attempts] == job.deliveries
    [got] = sink.messages
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ["bob@example.test", "carol@example.test"]
    assert got.content == MESSAGE  # dot-stuffing undone by the sink, CRLF kept
    assert got.helo == "mail.inf.example.ac.uk"
    assert f"SIZE={len(MESSAGE)}" in got.mail_options
    assert got.dsn == {} and got.rcpt_dsn["bob@example.test"] == {}
    a.apply()
    d = job.deliveries[0]
    assert (d.state, d.tries, d.status, d.remote_mta) == (RcptState.SENT, 1, "2.0.0",
                                                          f"{MX1} [127.0.0.1]")
    assert d.last_error == "250 2.0.0 Ok: queued as M1"


async def test_null_sender(zone: DnsServer, sink: Sink, esmtp: Couriers) -> None:
    job = make_job("esmtp", "example.test", ["bob@example.test"], sender="")
    [a] = await esmtp(sink.port).deliver(job)
    assert a.outcome is Outcome.SENT
    assert sink.messages[0].mail_from == "<>"


async def test_refusing_preferred_mx_falls_over_to_next(dns: DnsServer, sink: Sink,
                                                        esmtp: Couriers) -> None:
    dns.set("example.test", "MX", [(10, "dead.example.test"), (20, MX1)])
    dns.set("dead.example.test", "A", ["127.0.0.9"])  # nothing listens there
    dns.set(MX1, "A", ["127.0.0.1"])
    [a] = await esmtp(sink.port).deliver(make_job("esmtp", "example.test", ["b@example.test"]))
    assert a.outcome is Outcome.SENT
    assert a.remote == f"{MX1} [127.0.0.1]"
    assert len(sink.messages) == 1


async def test_all_targets_refuse_is_deferred_with_last_error(dns: DnsServer,
                                                              esmtp: Couriers) -> None:
    dns.set("example.test", "MX", [(10, "a.example.test"), (20, "b.example.test")])
    dns.set("a.example.test", "A", ["127.0.0.9"])
    dns.set("b.example.test", "A", ["127.0.0.8"])
    attempts = await esmtp(1).deliver(make_job("esmtp", "example.test", ["x@example.test",
                                                                         "y@example.test"]))
    for a in attempts:
        assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.4.1")
        assert "b.example.test [127.0.0.8]" in a.text and "refused" in a.text.lower()


@contextlib.asynccontextmanager
async def bad_server(host: str, port: int, greeting: bytes | None) -> AsyncIterator[list[int]]:
    """A peer that greets with ``greeting`` (or says nothing at all) and then hangs on."""
    seen: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        writers.append(writer)
        if greeting is not None:
            writer.write(greeting)
        await reader.read()

    server = await asyncio.start_server(client, host, port)
    try:
        yield seen
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()


@pytest.mark.parametrize(("greeting", "words"), [(None, "timed out"),
                                                 (b"554 5.7.1 Go away\r\n", "Go away")])
async def test_silent_or_refusing_mx_falls_over(dns: DnsServer, sink: Sink, esmtp: Couriers,
                                                greeting: bytes | None, words: str) -> None:
    dns.set("example.test", "MX", [(10, "bad.example.test"), (20, MX1)])
    dns.set("bad.example.test", "A", ["127.0.0.3"])
    dns.set(MX1, "A", ["127.0.0.1"])
    async with bad_server("127.0.0.3", sink.port, greeting) as seen:
        courier = esmtp(sink.port, delivery={"connect_timeout": 0.5}, idle_timeout=0)
        [a] = await courier.deliver(make_job("esmtp", "example.test", ["b@example.test"]))
        assert a.outcome is Outcome.SENT and a.remote == f"{MX1} [127.0.0.1]"
        assert seen == [1]
        dns.set("example.test", "MX", [(10, "bad.example.test")])
        [a] = await courier.deliver(make_job("esmtp", "example.test", ["c@example.test"]))
    assert (a.outcome, a.code) == (Outcome.DEFERRED, 451)
    assert "bad.example.test [127.0.0.3]" in a.text and words in a.text


async def test_equal_preference_spreads_load(dns: DnsServer, esmtp: Couriers) -> None:
    async with Sink() as one, Sink(host="127.0.0.2", port=one.port) as two:
        dns.set("example.test", "MX", [(10, "one.example.test"), (10, "two.example.test")])
        dns.set("one.example.test", "A", ["127.0.0.1"])
        dns.set("two.example.test", "A", ["127.0.0.2"])
        courier = esmtp(one.port, idle_timeout=0)  # no reuse: each job picks again
        for i in range(16):
            [a] = await courier.deliver(make_job("esmtp", "example.test",
                                                 [f"u{i}@example.test"]))
            assert a.outcome is Outcome.SENT
        assert len(one.messages) + len(two.messages) == 16
        assert one.messages and two.messages  # all on one: probability 2**-15


async def test_implicit_mx(dns: DnsServer, sink: Sink, esmtp: Couriers) -> None:
    dns.set("plain.test", "A", ["127.0.0.1"])
    [a] = await esmtp(sink.port).deliver(make_job("esmtp", "plain.test", ["b@plain.test"]))
    assert a.outcome is Outcome.SENT
    assert a.remote == "plain.test [127.0.0.1]"


async def test_null_mx_fails_5_1_10(dns: DnsServer, sink: Sink, esmtp: Couriers) -> None:
    dns.set("null.test", "MX", [(0, ".")])
    [a] = await esmtp(sink.port).deliver(make_job("esmtp", "null.test", ["b@null.test"]))
    assert (a.outcome, a.code, a.status) == (Outcome.FAILED, 556, "5.1.10")
    assert "does not accept mail" in a.text
    assert sink.connections == 0


async def test_nxdomain_fails(dns: DnsServer, sink: Sink, esmtp: Couriers) -> None:
    [a] = await esmtp(sink.port).deliver(make_job("esmtp", "nosuch.test", ["b@nosuch.test"]))
    assert (a.outcome, a.status) == (Outcome.FAILED, "5.1.2")


async def test_servfail_defers(dns: DnsServer, sink: Sink, esmtp: Couriers) -> None:
    dns.set("example.test", "MX", [(10, MX1)])
    dns.servfail.add("example.test")
    [a] = await esmtp(sink.port).deliver(make_job("esmtp", "example.test", ["b@example.test"]))
    assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.4.3")


async def test_route_port_and_bracketed_literal(sink: Sink, esmtp: Couriers,
                                                dns: DnsServer) -> None:
    courier = esmtp(1)  # smtp_port 1 would fail: the route's port must win
    [a] = await courier.deliver(make_job("esmtp", f"[127.0.0.1]:{sink.port}",
                                         ["b@example.test"]))
    assert a.outcome is Outcome.SENT
    assert dns.queries == []


async def test_bad_route_host_defers(esmtp: Couriers) -> None:
    [a] = await esmtp(25).deliver(make_job("esmtp", "[broken", ["b@example.test"]))
    assert (a.outcome, a.status) == (Outcome.DEFERRED, "4.3.5")


async def test_recipient_batches_share_one_connection(zone: DnsServer, sink: Sink,
                                                      esmtp: Couriers) -> None:
    users = [f"user{i:03d}@example.test" for i in range(250)]
    courier = esmtp(sink.port, queue={"recipients_per_transaction": 100})
    attempts = await courier.deliver(make_job("esmtp", "example.test", users))
    assert all(a.outcome is Outcome.SENT for a in attempts)
    assert sink.connections == 1
    assert sink.transactions == 3
    assert [len(m.rcpt_tos) for m in sink.messages] == [100, 100, 50]
    assert [r for m in sink.messages for r in m.rcpt_tos] == users


async def test_rejected_recipient_fails_alone(zone: DnsServer, esmtp: Couriers) -> None:
    async with Sink(reject_rcpt={"nobody@example.test"}) as sink:
        job = make_job("esmtp", "example.test",
                       ["bob@example.test", "nobody@example.test", "carol@example.test"])
        attempts = await esmtp(sink.port).deliver(job)
    assert [a.outcome for a in attempts] == [Outcome.SENT, Outcome.FAILED, Outcome.SENT]
    bad = attempts[1]
    assert (bad.code, bad.status, bad.text) == (550, "5.1.1", "No such user here")
    assert sink.messages[0].rcpt_tos == ["bob@example.test", "carol@example.test"]


async def test_tempfail_defers_then_delivers(zone: DnsServer, esmtp: Couriers) -> None:
    async with Sink(tempfail_rcpt=1) as sink:
        courier = esmtp(sink.port)
        [a] = await courier.deliver(make_job("esmtp", "example.test", ["b@example.test"]))
        assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.3.0")
        assert sink.messages == []
        [a] = await courier.deliver(make_job("esmtp", "example.test", ["b@example.test"]))
        assert a.outcome is Outcome.SENT
        assert len(sink.messages) == 1


async def test_data_rejection_fails_everyone(zone: DnsServer, esmtp: Couriers) -> None:
    async with Sink(data_reply="554 5.6.0 Message rejected: looks like spam") as sink:
        attempts = await esmtp(sink.port).deliver(
            make_job("esmtp", "example.test", ["b@example.test", "c@example.test"]))
    for a in attempts:
        assert (a.outcome, a.code, a.status) == (Outcome.FAILED, 554, "5.6.0")
        assert a.text == "Message rejected: looks like spam"


async def test_connection_dropped_mid_data_defers(zone: DnsServer, esmtp: Couriers) -> None:
    async with Sink(drop_in_data=True) as sink:
        attempts = await esmtp(sink.port).deliver(
            make_job("esmtp", "example.test", ["b@example.test", "c@example.test"]))
    for a in attempts:
        assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.4.2")
        assert "while sending the message" in a.text
    assert sink.partial and sink.partial[0].startswith(b"Received:")
    assert sink.messages == []


async def test_starttls_when_offered(zone: DnsServer, esmtp: Couriers,
                                     ca: trustme.CA) -> None:
    async with Sink(tls=server_tls(ca)) as sink:
        [a] = await esmtp(sink.port).deliver(make_job("esmtp", "example.test",
                                                      ["b@example.test"]))
    assert a.outcome is Outcome.SENT
    assert a.tls.startswith("TLSv1")
    assert sink.messages[0].tls
    assert sink.messages[0].content == MESSAGE


async def test_failed_opportunistic_handshake_retries_in_plain_text(
        zone: DnsServer, esmtp: Couriers, ca: trustme.CA) -> None:
    broken = server_tls(ca)
    broken.verify_mode = ssl.CERT_REQUIRED  # wants a client certificate we do not have
    async with Sink(tls=broken) as sink:
        [a] = await esmtp(sink.port).deliver(make_job("esmtp", "example.test",
                                                      ["b@example.test"]))
    assert a.outcome is Outcome.SENT and a.tls == ""
    assert sink.connections == 2
    assert not sink.messages[0].tls


async def test_starttls_never(zone: DnsServer, esmtp: Couriers, ca: trustme.CA) -> None:
    async with Sink(tls=server_tls(ca)) as sink:
        [a] = await esmtp(sink.port, delivery={"starttls": "never"}).deliver(
            make_job("esmtp", "example.test", ["b@example.test"]))
    assert a.outcome is Outcome.SENT and a.tls == ""
    assert not sink.messages[0].tls


async def test_tls_required_but_not_offered(zone: DnsServer, sink: Sink,
                                            esmtp: Couriers) -> None:
    [a] = await esmtp(sink.port, delivery={"starttls": "required"}).deliver(
        make_job("esmtp", "example.test", ["b@example.test"]))
    assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.7.4")
    assert "TLS required but not offered" in a.text
    assert sink.messages == []


async def test_smtputf8_needed_but_not_offered(zone: DnsServer, esmtp: Couriers) -> None:
    async with Sink(smtputf8=False) as sink:
        [a] = await esmtp(sink.port).deliver(
            make_job("esmtp", "example.test", ["jörg@example.test"], smtputf8=True))
    assert (a.outcome, a.code, a.status) == (Outcome.FAILED, 550, "5.6.7")
    assert sink.transactions == 0


async def test_smtputf8_and_8bitmime(zone: DnsServer, sink: Sink, esmtp: Couriers) -> None:
    message = MESSAGE.replace(b"Hello Bob", "Grüße, Jörg".encode())
    [a] = await esmtp(sink.port).deliver(
        make_job("esmtp", "example.test", ["jörg@example.test"], message=message,
                 smtputf8=True))
    assert a.outcome is Outcome.SENT
    got = sink.messages[0]
    assert got.rcpt_tos == ["jörg@example.test"]
    assert "SMTPUTF8" in got.mail_options and "BODY=8BITMIME" in got.mail_options
    assert got.content == message


async def test_dsn_parameters_pass_through(zone: DnsServer, sink: Sink,
                                           esmtp: Couriers) -> None:
    job = make_job("esmtp", "example.test", ["b@example.test"], ret="HDRS", envid="QID+2B1")
    r = job.envelope.recipients[0]
    r.notify, r.orcpt = ["DELAY", "FAILURE"], "rfc822;b@example.test"
    [a] = await esmtp(sink.port).deliver(job)
    assert a.outcome is Outcome.SENT
    got = sink.messages[0]
    assert got.dsn == {"RET": "HDRS", "ENVID": "QID+2B1"}
    assert got.rcpt_dsn["b@example.test"] == {"NOTIFY": "DELAY,FAILURE",
                                              "ORCPT": "rfc822;b@example.test"}


async def test_dsn_parameters_withheld_without_dsn(zone: DnsServer, esmtp: Couriers) -> None:
    async with Sink(dsn=False) as sink:  # would answer 555 to NOTIFY/RET
        job = make_job("esmtp", "example.test", ["b@example.test"], ret="FULL")
        job.envelope.recipients[0].notify = ["FAILURE"]
        [a] = await esmtp(sink.port).deliver(job)
    assert a.outcome is Outcome.SENT


async def test_message_over_remote_size_limit_fails(zone: DnsServer, esmtp: Couriers) -> None:
    async with Sink(size=len(MESSAGE) - 1) as sink:
        [a] = await esmtp(sink.port).deliver(make_job("esmtp", "example.test",
                                                      ["b@example.test"]))
    assert (a.outcome, a.code, a.status) == (Outcome.FAILED, 552, "5.3.4")
    assert sink.transactions == 0


async def test_connection_reused_across_jobs(zone: DnsServer, sink: Sink,
                                             esmtp: Couriers) -> None:
    courier = esmtp(sink.port)
    for user in ("b@example.test", "c@example.test", "d@example.test"):
        [a] = await courier.deliver(make_job("esmtp", "example.test", [user]))
        assert a.outcome is Outcome.SENT
    assert sink.connections == 1
    assert sink.transactions == 3
    assert sink.rsets == 0  # each transaction ended with the reply to its data
    await courier.aclose()
    assert sink.quits == 1


async def test_transaction_left_open_is_reset_before_the_next(zone: DnsServer,
                                                              esmtp: Couriers) -> None:
    """Every RCPT refused: MAIL's transaction is still open, so the next one starts with
    RSET (without it the server would answer 503 to a nested MAIL)."""
    async with Sink(reject_rcpt={"nobody@example.test"}) as sink:
        courier = esmtp(sink.port)
        [a] = await courier.deliver(make_job("esmtp", "example.test", ["nobody@example.test"]))
        assert a.outcome is Outcome.FAILED
        [b] = await courier.deliver(make_job("esmtp", "example.test", ["b@example.test"]))
        assert b.outcome is Outcome.SENT
        assert (sink.connections, sink.rsets) == (1, 1)
        assert [m.rcpt_tos for m in sink.messages] == [["b@example.test"]]


async def test_idle_connection_expires(zone: DnsServer, sink: Sink, esmtp: Couriers) -> None:
    courier = esmtp(sink.port, idle_timeout=0.2)
    await courier.deliver(make_job("esmtp", "example.test", ["b@example.test"]))
    deadline = time.monotonic() + 5
    while sink.quits == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert sink.quits == 1


async def test_stale_cached_connection_reconnects(zone: DnsServer, esmtp: Couriers) -> None:
    async with Sink() as sink:
        courier = esmtp(sink.port)
        await courier.deliver(make_job("esmtp", "example.test", ["b@example.test"]))
        for p in sink._protocols:  # the remote drops the idle connection
            assert p.transport is not None
            p.transport.close()
        await asyncio.sleep(0.05)
        [a] = await courier.deliver(make_job("esmtp", "example.test", ["c@example.test"]))
        assert a.outcome is Outcome.SENT
        assert sink.connections == 2


async def test_unexpected_error_defers(zone: DnsServer, sink: Sink, esmtp: Couriers,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    courier = esmtp(sink.port)

    async def boom(*args: object) -> None:
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr(courier.resolver, "targets", boom)
    [a] = await courier.deliver(make_job("esmtp", "example.test", ["b@example.test"]))
    assert (a.outcome, a.status) == (Outcome.DEFERRED, "4.3.0")
    assert "resolver exploded" in a.text


@pytest.mark.pipelining_only
async def test_pipelined_transaction_waits_for_no_reply(zone: DnsServer,
                                                        esmtp: Couriers) -> None:
    """With PIPELINING offered, MAIL, every RCPT and DATA go out before any reply: this
    server answers nothing until it has read DATA (a client waiting for the MAIL reply
    would stall, and the server hangs up after 3 s)."""
    seen: list[bytes] = []

    async def strict(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def line() -> bytes:
            got = await asyncio.wait_for(reader.readuntil(b"\r\n"), 3)
            seen.append(got)
            return got

        with contextlib.suppress(TimeoutError):
            while await line() != b"DATA\r\n":
                pass
            writer.write(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n"
                         b"354 Go ahead\r\n")
            seen.append(await asyncio.wait_for(reader.readuntil(b"\r\n.\r\n"), 3))
            writer.write(b"250 2.0.0 Ok: queued as P1\r\n")
            while (await line()).upper() != b"QUIT\r\n":
                writer.write(b"250 Ok\r\n")
            writer.write(b"221 2.0.0 Bye\r\n")

    server, port = await _scripted_server(strict)
    courier = esmtp(port)
    attempts = await courier.deliver(
        make_job("esmtp", "example.test", ["b@example.test", "nobody@example.test"]))
    await courier.aclose()
    server.close()
    assert [(a.outcome, a.code) for a in attempts] == [(Outcome.SENT, 250),
                                                        (Outcome.FAILED, 550)]
    assert attempts[0].text == "Ok: queued as P1"
    commands = [x.split(b":")[0] for x in seen[0:3]]
    assert commands == [b"MAIL FROM", b"RCPT TO", b"RCPT TO"]
    body = seen[4]
    assert b"\r\n..a line that starts with a dot\r\n" in body and body.endswith(b"Bye.\r\n.\r\n")


async def _scripted_server(script: Any) -> tuple[asyncio.Server, int]:
    """A server whose session is ``script(reader, writer)`` after greeting and EHLO (which
    offers PIPELINING)."""
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 scripted.test ESMTP\r\n")
            await reader.readuntil(b"\r\n")
            writer.write(b"250-scripted.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.pipelining_only
async def test_pipelined_replies_each_get_the_command_timeout(zone: DnsServer,
                                                             esmtp: Couriers) -> None:
    """A server that takes 0.4 s per RCPT (a callout, say) is within a 1 s timeout for
    each, though not for all five together."""

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")  # MAIL
        writer.write(b"250 2.1.0 Ok\r\n")
        for _ in range(5):
            await reader.readuntil(b"\r\n")
            await asyncio.sleep(0.4)
            writer.write(b"250 2.1.5 Ok\r\n")
        await reader.readuntil(b"\r\n")  # DATA
        writer.write(b"354 Go ahead\r\n")
        await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"250 2.0.0 Ok: queued\r\n")
        await reader.readuntil(b"\r\n")  # QUIT
        writer.write(b"221 Bye\r\n")

    server, port = await _scripted_server(slow)
    courier = esmtp(port, delivery={"command_timeout": 1})
    users = [f"u{i}@example.test" for i in range(5)]
    attempts = await courier.deliver(make_job("esmtp", "example.test", users))
    await courier.aclose()
    server.close()
    assert [a.outcome for a in attempts] == [Outcome.SENT] * 5, attempts[0].text


@pytest.mark.pipelining_only
async def test_pipelined_replies_before_a_hang_up_stand(zone: DnsServer,
                                                         esmtp: Couriers) -> None:
    """The server refuses the first recipient, then hangs up: that refusal is final (a
    bounce), the other recipient is deferred, as without pipelining."""

    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")
        writer.write(b"250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n")
        await writer.drain()

    server, port = await _scripted_server(rude)
    courier = esmtp(port)
    attempts = await courier.deliver(
        make_job("esmtp", "example.test", ["nobody@example.test", "b@example.test"]))
    await courier.aclose()
    server.close()
    assert [(a.outcome, a.code) for a in attempts] == [(Outcome.FAILED, 550),
                                                        (Outcome.DEFERRED, 451)]
    assert "lost connection" in attempts[1].text


async def test_a_message_rendered_per_recipient_gets_one_transaction_each(
        zone: DnsServer, sink: Sink, esmtp: Couriers) -> None:
    """A list post: each member gets its own envelope sender (VERP) and its own bytes,
    over one connection."""
    from postroom.envelope import Delivery

    job = make_job("esmtp", "example.test", ["a@example.test", "b@example.test",
                                             "c@example.test"])

    def render(d: Delivery) -> tuple[str, bytes]:
        user = d.user.replace("@", "=")
        return f"list-bounces+{user}@lists.test", b"X-Member: " + d.user.encode() + b"\r\n" \
            + job.message

    job.render = render
    attempts = await esmtp(sink.port).deliver(job)
    assert [a.outcome for a in attempts] == [Outcome.SENT] * 3
    assert [(m.mail_from, m.rcpt_tos) for m in sink.messages] == [
        (f"list-bounces+{u}=example.test@lists.test", [f"{u}@example.test"])
        for u in "abc"]
    assert [m.content.split(b"\r\n", 1)[0] for m in sink.messages] == [
        f"X-Member: {u}@example.test".encode() for u in "abc"]
    assert sink.connections == 1
