"""The relay courier: per-relay port, TLS mode and AUTH, against real sinks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trustme

from postroom.delivery.mx import parse_destination
from postroom.delivery.relay import RelayCourier, relay_settings
from postroom.delivery.smtp_client import Policy
from postroom.types import Outcome
from tests.delivery.conftest import MESSAGE, SiteFactory, make_job
from tests.dnsserver import DnsServer
from tests.sinks import Sink, server_tls

USERS = {"relayuser": "s3cret pass"}
Relays = Callable[..., RelayCourier]


@pytest.fixture
async def relay(make_site: SiteFactory) -> AsyncIterator[Relays]:
    """``relay(port, password="...", **entry)``: a courier whose ``[127.0.0.1]`` relay
    entry has the given settings (and a password file when ``password`` is given)."""
    made: list[RelayCourier] = []

    def build(port: int, *, password: str | None = None, **entry: Any) -> RelayCourier:
        settings: dict[str, Any] = {"host": "[127.0.0.1]", "port": port, **entry}
        if password is not None:
            settings["password_file"] = "secrets/relay.pass"
        site = make_site(delivery={"connect_timeout": 5, "command_timeout": 10},
                         relays=[settings])
        if password is not None:
            (site.home / "secrets").mkdir(exist_ok=True)
            (site.home / "secrets/relay.pass").write_text(password + "\n")
        courier = RelayCourier(site)
        made.append(courier)
        return courier

    yield build
    for c in made:
        await c.aclose()


async def test_auth_over_required_tls(relay: Relays, ca: trustme.CA) -> None:
    async with Sink(tls=server_tls(ca), users=USERS) as sink:
        courier = relay(sink.port, tls="required", username="relayuser", password=USERS[
            "relayuser"])
        [a] = await courier.deliver(make_job("relay", "[127.0.0.1]", ["bob@example.org"]))
    assert a.outcome is Outcome.SENT, a.reply
    assert a.tls.startswith("TLSv1")
    assert a.remote == "127.0.0.1 [127.0.0.1]"
    [got] = sink.messages
    assert got.login == "relayuser" and got.tls
    assert got.content == MESSAGE


async def test_wrong_password_defers(relay: Relays, ca: trustme.CA) -> None:
    async with Sink(tls=server_tls(ca), users=USERS) as sink:
        courier = relay(sink.port, tls="required", username="relayuser", password="wrong")
        [a] = await courier.deliver(make_job("relay", "[127.0.0.1]", ["bob@example.org"]))
    assert (a.outcome, a.status) == (Outcome.DEFERRED, "4.7.0")
    assert "535" in a.text and "relayuser" in a.text
    assert sink.messages == []


async def test_missing_password_file_defers_without_connecting(relay: Relays,
                                                               ca: trustme.CA) -> None:
    async with Sink(tls=server_tls(ca), users=USERS) as sink:
        courier = relay(sink.port, tls="required", username="relayuser",
                        password_file="secrets/nosuch")
        [a] = await courier.deliver(make_job("relay", "[127.0.0.1]", ["bob@example.org"]))
    assert (a.outcome, a.status) == (Outcome.DEFERRED, "4.3.5")
    assert "secrets/nosuch" in a.text
    assert sink.connections == 0


async def test_no_password_without_tls(relay: Relays, ca: trustme.CA) -> None:
    async with Sink(tls=server_tls(ca), users=USERS) as sink:
        courier = relay(sink.port, tls="never", username="relayuser",
                        password=USERS["relayuser"])
        [a] = await courier.deliver(make_job("relay", "[127.0.0.1]", ["bob@example.org"]))
    assert (a.outcome, a.status) == (Outcome.DEFERRED, "4.7.0")
    assert "without TLS" in a.text
    assert sink.messages == []


async def test_required_tls_not_offered(relay: Relays) -> None:
    async with Sink() as sink:
        [a] = await relay(sink.port, tls="required").deliver(
            make_job("relay", "[127.0.0.1]", ["bob@example.org"]))
    assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.7.4")
    assert sink.messages == []


@pytest.fixture
def ca_file(ca: trustme.CA, make_site: SiteFactory, tmp_path: Any) -> str:
    path = tmp_path / "relay-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_verified_tls(relay: Relays, ca: trustme.CA, ca_file: str) -> None:
    async with Sink(tls=server_tls(ca, "127.0.0.1"), users=USERS) as sink:
        courier = relay(sink.port, tls="verify", ca_file=ca_file, username="relayuser",
                        password=USERS["relayuser"])
        [a] = await courier.deliver(make_job("relay", "[127.0.0.1]", ["bob@example.org"]))
    assert a.outcome is Outcome.SENT, a.reply
    assert sink.messages[0].login == "relayuser" and sink.messages[0].tls


@pytest.mark.parametrize("problem", ["certificate for another name", "unknown CA"])
async def test_verify_refuses_a_bad_certificate(relay: Relays, ca: trustme.CA, ca_file: str,
                                                problem: str) -> None:
    """tls = verify never falls back to plain text or an unchecked certificate, and never
    sends the password."""
    issuer = ca if problem == "certificate for another name" else trustme.CA()
    name = "other.example.org" if problem == "certificate for another name" else "127.0.0.1"
    async with Sink(tls=server_tls(issuer, name), users=USERS) as sink:
        courier = relay(sink.port, tls="verify", ca_file=ca_file, username="relayuser",
                        password=USERS["relayuser"])
        [a] = await courier.deliver(make_job("relay", "[127.0.0.1]", ["bob@example.org"]))
    assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.7.5")
    assert "certificate verify failed" in a.text, a.text
    assert sink.messages == [] and sink.connections == 1


@pytest.mark.parametrize(("cert_for", "outcome"), [
    ("mx.attacker.test", Outcome.DEFERRED), ("relay.example.test", Outcome.SENT)])
async def test_verify_checks_the_route_name_not_what_dns_said(
        make_site: SiteFactory, dns: DnsServer, ca: trustme.CA, ca_file: str,
        cert_for: str, outcome: Outcome) -> None:
    """A relay route without brackets is looked up by MX; the certificate must name the
    route's host, not the MX host DNS answered with (which a spoofed answer chooses)."""
    dns.set("relay.example.test", "MX", [(10, "mx.attacker.test")])
    dns.set("mx.attacker.test", "A", ["127.0.0.1"])
    async with Sink(tls=server_tls(ca, cert_for)) as sink:
        site = make_site(delivery={"connect_timeout": 5, "command_timeout": 10},
                         dns={"nameservers": [dns.nameserver], "timeout": 2},
                         relays=[{"host": "relay.example.test", "port": sink.port,
                                  "tls": "verify", "ca_file": ca_file}])
        courier = RelayCourier(site)
        try:
            [a] = await courier.deliver(make_job("relay", "relay.example.test",
                                                 ["bob@example.org"]))
        finally:
            await courier.aclose()
    assert a.outcome is outcome, a.text


async def test_verify_with_unreadable_ca_file_defers(relay: Relays, ca: trustme.CA) -> None:
    async with Sink(tls=server_tls(ca)) as sink:
        courier = relay(sink.port, tls="verify", ca_file="secrets/nosuch-ca.pem")
        [a] = await courier.deliver(make_job("relay", "[127.0.0.1]", ["bob@example.org"]))
    assert (a.outcome, a.status) == (Outcome.DEFERRED, "4.7.5")
    assert "cannot load the CA certificates" in a.text and "nosuch-ca.pem" in a.text


async def test_smart_host_without_entry(make_site: SiteFactory) -> None:
    async with Sink() as sink:
        courier = RelayCourier(make_site())
        try:
            [a] = await courier.deliver(make_job("relay", f"[127.0.0.1]:{sink.port}",
                                                 ["bob@example.org"]))
        finally:
            await courier.aclose()
    assert a.outcome is Outcome.SENT
    assert len(sink.messages) == 1


def test_relay_entries_match_by_host(make_site: SiteFactory) -> None:
    site = make_site(relays=[
        {"host": "[mailrelay.ed.example.ac.uk]", "port": 587, "tls": "required",
         "username": "u", "password_file": "relay.pass"},
        {"host": "[other.example]", "tls": "never"},
    ])
    entry = relay_settings(site, "[MailRelay.ed.example.ac.uk]:2525")
    assert entry is not None and entry.port == 587
    assert relay_settings(site, "[nosuch.example]") is None
    courier = RelayCourier(site)
    policy = courier.policy("[mailrelay.ed.example.ac.uk]",
                            parse_destination("[mailrelay.ed.example.ac.uk]"))
    assert policy == Policy(587, "required", "u", site.home / "relay.pass")
    routed = courier.policy("[mailrelay.ed.example.ac.uk]:2525",
                            parse_destination("[mailrelay.ed.example.ac.uk]:2525"))
    assert routed.port == 2525  # the route's own port wins
    assert courier.policy("[x]", parse_destination("[x]")) == Policy(25, "opportunistic")
