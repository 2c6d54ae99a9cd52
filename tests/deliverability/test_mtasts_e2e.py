"""MTA-STS for outbound mail through a real ``postroom serve``: the test DNS server
publishes ``_mta-sts`` records and MX records, a local HTTPS server (trustme certificate)
serves the policies. An ``enforce`` destination whose MX is not in its policy is deferred
with the reason; one whose MX is named gets its mail over verified TLS; a ``testing`` one
is delivered and the log says what enforce would have refused."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from postroom.delivery.mtasts import StsPolicy, parse_policy, txt_id
from tests.conftest import ThreadedDns
from tests.deliverability.helpers import message, prepare, start, wait_for
from tests.server import RELAY_IP
from tests.sinks import Sink, server_tls
from tests.smtp.smtp_client import client

POLICIES = {
    "enforce.test": "version: STSv1\nmode: enforce\nmx: mail.enforce.test\nmax_age: 86400\n",
    "good.test": "version: STSv1\nmode: enforce\nmx: *.good.test\nmax_age: 86400\n",
    "testing.test": "version: STSv1\nmode: testing\nmx: mail.testing.test\nmax_age: 86400\n",
}


class PolicyServer:
    """HTTPS on 127.0.0.1, port 0: /.well-known/mta-sts.txt of the Host asked for."""

    def __init__(self, ca: trustme.CA) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*(f"mta-sts.{d}" for d in POLICIES)).configure_cert(self.ctx)
        self.requests: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> PolicyServer:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _client(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            host = re.search(rb"(?im)^host:\s*mta-sts\.(\S+)", head)
            domain = host.group(1).decode() if host else ""
            self.requests.append(domain)
            body = POLICIES.get(domain)
            if body is None:
                writer.write(b"HTTP/1.0 404 Not Found\r\n\r\n")
            else:
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                             + body.encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def sink(ca: trustme.CA) -> AsyncIterator[Sink]:
    s = await Sink(tls=server_tls(ca, "mx.good.test", "mx.enforce.test",
                                  "mx.testing.test")).start()
    yield s
    await s.stop()


@pytest.fixture
async def policies(ca: trustme.CA) -> AsyncIterator[PolicyServer]:
    s = await PolicyServer(ca).start()
    yield s
    await s.stop()


@pytest.fixture
def zone(dns_server: ThreadedDns) -> Iterator[None]:
    names = []
    for domain in POLICIES:
        records = {f"_mta-sts.{domain}": ("TXT", ['"v=STSv1; id=20261201"']),
                   f"mta-sts.{domain}": ("A", ["127.0.0.1"]),
                   domain: ("MX", [(10, f"mx.{domain}")]),
                   f"mx.{domain}": ("A", ["127.0.0.1"])}
        for name, (rdtype, values) in records.items():
            dns_server.server.set(name, rdtype, values)
            names.append(name)
    yield
    for name in names:
        dns_server.server.remove(name)


async def test_enforce_defers_an_mx_outside_the_policy_testing_delivers_and_logs(
        example_site: Path, sink: Sink, policies: PolicyServer, ca: trustme.CA,
        zone: None) -> None:
    site = example_site
    ca.cert_pem.write_to_path(str(site / "tls/sts-ca.pem"))
    profile = site / "postroom.toml"
    profile.write_text(re.sub(r"smtp_port = \d+", f"smtp_port = {sink.port}",
                              profile.read_text()))
    prepare(site, sink.port, extra=f'\n[mta_sts]\nca_file = "tls/sts-ca.pem"\n'
                                   f"https_port = {policies.port}\n")
    mt = site / "maps/mailertable"  # other domains by MX, as a real site routes them
    mt.write_text("\n".join(x for x in mt.read_text().splitlines() if not x.startswith(".")))
    server = await start(site)
    try:
        def send(rcpt: str) -> None:
            with client(server.ports["mx"], RELAY_IP) as c:
                c.sendmail("rt@inf.example.ac.uk", [rcpt],
                           message("rt@inf.example.ac.uk", rcpt, f"to {rcpt}"))
        for rcpt in ("ann@enforce.test", "bob@testing.test", "cy@good.test"):
            await asyncio.to_thread(send, rcpt)
        await wait_for(lambda: len(sink.messages) == 2)
        await wait_for(lambda: "to=<ann@enforce.test>" in server.log())
    finally:
        await asyncio.to_thread(server.stop)
    got = {m.rcpt_tos[0]: m for m in sink.messages}
    assert sorted(got) == ["bob@testing.test", "cy@good.test"]
    assert got["cy@good.test"].tls  # enforce: verified TLS to the MX the policy names
    log = server.log()
    (deferred,) = [x for x in log.splitlines() if "to=<ann@enforce.test>" in x]
    assert ("stat=Deferred: 451 4.7.5 MTA-STS policy of enforce.test (mode enforce, mx: "
            "mail.enforce.test) names none of its MX hosts: mx.enforce.test") in deferred
    assert ("MTA-STS testing: testing.test: MX mx.testing.test not in the policy (mx: "
            "mail.testing.test); delivered anyway") in log
    cache = json.loads((site / "state/mta-sts.json").read_text())
    assert cache["enforce.test"]["mode"] == "enforce" and cache["good.test"]["id"] == \
        "20261201"
    assert sorted(set(policies.requests)) == sorted(POLICIES)


def test_policy_parsing_and_matching() -> None:
    p = parse_policy("x.test", "1", "version: STSv1\r\nmode: enforce\r\nmx: *.x.test\r\n"
                     "mx: mail.other.test\r\nmax_age: 99999999999\r\n", 0.0)
    assert p == StsPolicy("x.test", "1", "enforce", ("*.x.test", "mail.other.test"),
                          31557600, 0.0)
    assert p.matches("mx1.x.test") and p.matches("MAIL.other.test.")
    assert not p.matches("a.b.x.test") and not p.matches("x.test")
    assert p.expired(31557600) and not p.expired(1)
    for bad in ("mode: enforce\nmx: a\nmax_age: 1", "version: STSv1\nmode: on\nmax_age: 1",
                "version: STSv1\nmode: enforce\nmax_age: 1"):
        with pytest.raises(ValueError):
            parse_policy("x.test", "1", bad, 0.0)
    assert txt_id(["v=STSv1; id=abc;"]) == "abc"
    assert txt_id(["v=STSv1; id=a", "v=STSv1; id=b"]) is None
    assert txt_id(["v=spf1 -all"]) is None
