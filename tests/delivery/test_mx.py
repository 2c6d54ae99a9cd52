"""MX resolution against a real DNS server on 127.0.0.1 (tests/dnsserver.py)."""

from __future__ import annotations

import errno

import dns.asyncquery as asyncquery
import dns.message as dnsmessage
import dns.resolver
import pytest

from postroom.delivery.mx import (
    Destination,
    MxResolver,
    Target,
    describe_dns,
    parse_destination,
    parse_nameservers,
)
from postroom.errors import PermanentFailure, TemporaryFailure
from tests.dnsserver import DnsServer


@pytest.mark.parametrize(("spec", "expected"), [
    ("Example.TEST", Destination("example.test", None, True)),
    ("example.test.", Destination("example.test", None, True)),
    ("[smtp.example.test]", Destination("smtp.example.test", None, False)),
    ("[127.0.0.1]:2526", Destination("127.0.0.1", 2526, False)),
    ("[IPv6:2001:db8::7]", Destination("2001:db8::7", None, False)),
    ("[::1]:25", Destination("::1", 25, False)),
    ("relay.example.test:587", Destination("relay.example.test", 587, True)),
    ("192.0.2.7", Destination("192.0.2.7", None, False)),
])
def test_parse_destination(spec: str, expected: Destination) -> None:
    assert parse_destination(spec) == expected


@pytest.mark.parametrize("spec", ["[host", "[host]x", "[host]:0", "[host]:99999", "[]",
                                  "host:port"])
def test_parse_destination_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_destination(spec)


def test_parse_nameservers_keeps_each_port() -> None:
    assert parse_nameservers(["127.0.0.1:5353", "[::1]:54", "192.0.2.1", "2001:db8::53"]) == [
        ("127.0.0.1", 5353), ("::1", 54), ("192.0.2.1", 53), ("2001:db8::53", 53)]


async def test_nameservers_on_different_ports(dns: DnsServer) -> None:
    async with DnsServer({"two.test": {"A": ["127.0.0.7"]}}) as second:
        dns.servfail.add("*")  # the first server fails, so the second must be asked
        r = MxResolver([dns.nameserver, second.nameserver], timeout=2)
        assert await r.targets("[two.test]") == [Target("two.test", ["127.0.0.7"])]
        assert second.queries and dns.queries


def resolver(dns: DnsServer, **kw: object) -> MxResolver:
    return MxResolver([dns.nameserver], timeout=kw.pop("timeout", 2.0), **kw)  # type: ignore


async def test_preference_order(dns: DnsServer) -> None:
    dns.set("example.test", "MX", [(20, "mx2.example.test"), (10, "mx1.example.test")])
    dns.set("mx1.example.test", "A", ["127.0.0.1"])
    dns.set("mx2.example.test", "A", ["127.0.0.2"])
    dns.set("mx2.example.test", "AAAA", ["::1"])
    assert await resolver(dns).targets("example.test") == [
        Target("mx1.example.test", ["127.0.0.1"]),
        Target("mx2.example.test", ["127.0.0.2", "::1"]),
    ]


async def test_equal_preference_is_shuffled(dns: DnsServer) -> None:
    dns.set("example.test", "MX", [(10, "a.example.test"), (10, "b.example.test"),
                                   (10, "c.example.test"), (5, "first.example.test"),
                                   (30, "last.example.test")])
    for name in ("a", "b", "c", "first", "last"):
        dns.set(f"{name}.example.test", "A", ["127.0.0.1"])
    r = resolver(dns)
    orders = set()
    for _ in range(30):
        hosts = [t.host.split(".")[0] for t in await r.targets("example.test")]
        assert hosts[0] == "first" and hosts[-1] == "last"
        assert sorted(hosts[1:4]) == ["a", "b", "c"]
        orders.add(tuple(hosts))
    assert len(orders) > 1  # 30 draws of 6 orders: all equal has probability 6 * 6**-30


async def test_implicit_mx_from_address_records(dns: DnsServer) -> None:
    dns.set("plain.test", "A", ["127.0.0.9"])
    assert await resolver(dns).targets("plain.test") == [Target("plain.test", ["127.0.0.9"])]
    assert ("plain.test", "MX") in dns.queries


async def test_null_mx_is_permanent_5_1_10(dns: DnsServer) -> None:
    dns.set("null.test", "MX", [(0, ".")])
    dns.set("null.test", "A", ["127.0.0.1"])
    with pytest.raises(PermanentFailure) as e:
        await resolver(dns).targets("null.test")
    assert (e.value.code, e.value.enhanced) == (556, "5.1.10")
    assert "does not accept mail" in e.value.text


async def test_nxdomain_is_permanent_5_1_2(dns: DnsServer) -> None:
    with pytest.raises(PermanentFailure) as e:
        await resolver(dns).targets("nosuch.test")
    assert e.value.enhanced == "5.1.2"


async def test_no_mx_and_no_address_is_permanent_5_1_2(dns: DnsServer) -> None:
    dns.set("empty.test", "TXT", ['"v=spf1 -all"'])
    with pytest.raises(PermanentFailure) as e:
        await resolver(dns).targets("empty.test")
    assert e.value.enhanced == "5.1.2"


async def test_servfail_is_temporary_4_4_3(dns: DnsServer) -> None:
    dns.set("broken.test", "MX", [(10, "mx.broken.test")])
    dns.servfail.add("broken.test")
    with pytest.raises(TemporaryFailure) as e:
        await resolver(dns).targets("broken.test")
    assert (e.value.code, e.value.enhanced) == (451, "4.4.3")


async def test_timeout_is_temporary_4_4_3(dns: DnsServer) -> None:
    dns.drop.add("slow.test")
    with pytest.raises(TemporaryFailure) as e:
        await resolver(dns, timeout=0.5).targets("slow.test")
    assert e.value.enhanced == "4.4.3"
    assert "DNS timeout (no answer from" in e.value.text


async def test_mx_hosts_without_address(dns: DnsServer) -> None:
    dns.set("half.test", "MX", [(10, "gone.half.test"), (20, "mx.half.test")])
    dns.set("mx.half.test", "A", ["127.0.0.3"])
    assert await resolver(dns).targets("half.test") == [Target("mx.half.test", ["127.0.0.3"])]
    dns.set("none.test", "MX", [(10, "gone.none.test")])
    with pytest.raises(PermanentFailure) as e:
        await resolver(dns).targets("none.test")
    assert e.value.enhanced == "5.4.4"


async def test_mx_host_lookup_failure_is_temporary(dns: DnsServer) -> None:
    dns.set("flaky.test", "MX", [(10, "mx.flaky.test")])
    dns.set("mx.flaky.test", "A", ["127.0.0.1"])
    dns.servfail.add("mx.flaky.test")
    with pytest.raises(TemporaryFailure) as e:
        await resolver(dns).targets("flaky.test")
    assert e.value.enhanced == "4.4.3"


async def test_bracketed_host_skips_mx(dns: DnsServer) -> None:
    dns.set("smtp.example.test", "MX", [(10, "elsewhere.example.test")])
    dns.set("smtp.example.test", "A", ["127.0.0.4"])
    assert await resolver(dns).targets("[smtp.example.test]") == [
        Target("smtp.example.test", ["127.0.0.4"])]
    assert ("smtp.example.test", "MX") not in dns.queries
    with pytest.raises(PermanentFailure) as e:
        await resolver(dns).targets("[nosuch.example.test]")
    assert e.value.enhanced == "5.1.2"


async def test_address_literal_needs_no_dns(dns: DnsServer) -> None:
    assert await resolver(dns).targets("[127.0.0.1]:2526") == [Target("127.0.0.1",
                                                                      ["127.0.0.1"])]
    assert dns.queries == []


async def test_mx_pointing_back_to_us(dns: DnsServer) -> None:
    dns.set("backup.test", "MX", [(10, "primary.backup.test"),
                                  (20, "mail.inf.example.ac.uk"), (30, "other.backup.test")])
    for host in ("primary.backup.test", "other.backup.test"):
        dns.set(host, "A", ["127.0.0.1"])
    r = resolver(dns, our_names=["mail.inf.example.ac.uk"])
    assert [t.host for t in await r.targets("backup.test")] == ["primary.backup.test"]
    dns.set("loop.test", "MX", [(10, "mail.inf.example.ac.uk")])
    with pytest.raises(PermanentFailure) as e:
        await r.targets("loop.test")
    assert e.value.enhanced == "5.4.6"


async def test_tcp_answers(dns: DnsServer) -> None:
    """The server answers over TCP too (dnspython falls back to it on truncation)."""
    dns.set("tcp.test", "A", ["127.0.0.5"])
    q = dnsmessage.make_query("tcp.test", "A")
    reply = await asyncquery.tcp(q, "127.0.0.1", port=dns.port, timeout=2)
    assert reply.answer[0][0].to_text() == "127.0.0.5"


async def test_system_resolver_reads_hosts_file_for_bracketed_hosts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # "localhost" comes from /etc/hosts: no query leaves the machine
    monkeypatch.delenv("POSTROOM_FORBID_SYSTEM_DNS")
    targets = await MxResolver([], timeout=5).targets("[localhost]")
    assert targets[0].host == "localhost"
    assert set(targets[0].addresses) & {"127.0.0.1", "::1"}


# -- each DNS failure under its own name (issue 9: an unreachable network was "SERVFAIL or
# refused"); every text is what `postroom queue` and the mail log show

def dead_udp_port() -> int:
    """A port on 127.0.0.1 where nothing listens: bound, then closed."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def temporary(r: MxResolver, spec: str) -> str:
    with pytest.raises(TemporaryFailure) as e:
        await r.targets(spec)
    assert (e.value.code, e.value.enhanced) == (451, "4.4.3")
    return e.value.text


async def test_servfail_is_called_servfail(dns: DnsServer) -> None:
    dns.servfail.add("broken.test")
    text = await temporary(resolver(dns), "broken.test")
    assert text == f"MX lookup for broken.test failed: SERVFAIL from {dns.nameserver}"
    text = await temporary(resolver(dns), "[broken.test]")
    assert text == f"A lookup for broken.test failed: SERVFAIL from {dns.nameserver}"


async def test_timeout_is_called_a_timeout_naming_the_server(dns: DnsServer) -> None:
    dns.drop.add("slow.test")
    text = await temporary(resolver(dns, timeout=0.5), "slow.test")
    assert text == (f"MX lookup for slow.test failed: DNS timeout (no answer from "
                    f"{dns.nameserver} within 0.5s)")


async def test_nothing_listening_is_a_timeout_not_servfail() -> None:
    # UDP to a dead port: the resolver's unconnected socket hears nothing back, so this is
    # a timeout, and it must not be called SERVFAIL or refused
    port = dead_udp_port()
    text = await temporary(MxResolver([f"127.0.0.1:{port}"], timeout=0.5), "example.test")
    assert text == (f"MX lookup for example.test failed: DNS timeout (no answer from "
                    f"127.0.0.1:{port} within 0.5s)")
    assert "SERVFAIL" not in text and "refused" not in text


async def test_a_server_the_kernel_will_not_send_to_cannot_be_reached() -> None:
    # the broadcast address without SO_BROADCAST: sendto fails at once (EACCES), nothing
    # leaves the machine; the same path as "Network is unreachable"
    text = await temporary(MxResolver(["255.255.255.255"], timeout=2), "example.test")
    assert text == ("MX lookup for example.test failed: cannot reach the DNS server "
                    "255.255.255.255: Permission denied")


async def test_two_servers_failing_differently_are_both_named(dns: DnsServer) -> None:
    async with DnsServer() as second:
        dns.servfail.add("*")
        second.drop.add("*")
        r = MxResolver([dns.nameserver, second.nameserver], timeout=0.5)
        text = await temporary(r, "example.test")
    assert text == (f"MX lookup for example.test failed: SERVFAIL from {dns.nameserver}; "
                    f"DNS timeout (no answer from {second.nameserver} within 0.5s)")


async def test_nxdomain_says_the_domain_does_not_exist(dns: DnsServer) -> None:
    with pytest.raises(PermanentFailure) as e:
        await resolver(dns).targets("nosuch.test")
    assert (e.value.code, e.value.enhanced) == (550, "5.1.2")
    assert e.value.text == "Domain nosuch.test does not exist (NXDOMAIN)"


@pytest.mark.parametrize(("errors", "expected"), [
    ([("Do53:192.0.2.53@53", False, 53,
       OSError(errno.ENETUNREACH, "Network is unreachable"), None)],
     "cannot reach the DNS server 192.0.2.53: Network is unreachable"),
    ([("Do53:::1@5353", True, 5353, ConnectionRefusedError(errno.ECONNREFUSED,
                                                          "Connection refused"), None)],
     "cannot reach the DNS server [::1]:5353 over TCP: Connection refused"),
    ([("Do53:192.0.2.53@53", False, 53, "REFUSED", None),
      ("Do53:192.0.2.54@53", False, 53, "SERVFAIL", None)],
     "REFUSED from 192.0.2.53; SERVFAIL from 192.0.2.54"),
])
def test_describe_dns_names_what_happened(errors: list[tuple[object, ...]],
                                         expected: str) -> None:
    """Failures a test cannot cause without changing the machine's routes, as dnspython
    reports them (its NoNameservers ``errors``)."""
    e = dns.resolver.NoNameservers(request=dnsmessage.make_query("x.test", "MX"),
                                   errors=errors)
    assert describe_dns(e, timeout=10) == expected
