"""DKIM and ARC through a real ``postroom serve``, the test DNS server publishing the
keys: mail from an internal machine is signed and verifies with dkimpy against the
published key (RSA-2048 and ed25519); a list post keeps a valid DKIM signature of the
list's domain and carries an ARC set that validates; forwarded outside mail is sealed with
what the hub found (the author's DKIM signature passes) and that signature survives."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import dkim
import pytest
import trustme

from postroom.signing.dnstxt import TxtResolver
from postroom.signing.keys import generate, txt_strings
from tests.conftest import SENDMAIL, ThreadedDns, run
from tests.deliverability.helpers import (
    SITE_DOMAIN,
    message,
    ok,
    prepare,
    send_from_upstream,
    start,
    wait_for,
)
from tests.server import OUTSIDE_IP, RELAY_IP
from tests.sinks import Sink
from tests.smtp.smtp_client import client, tls_context

LIST = f"physics@{SITE_DOMAIN}"


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


@pytest.fixture
def published(dns_server: ThreadedDns) -> Iterator[list[str]]:
    """Names published in the test DNS during the test; removed after it."""
    names: list[str] = []
    yield names
    for name in names:
        dns_server.server.remove(name)


def keygen(site: Path, domain: str, selector: str, algorithm: str,
           dns_server: ThreadedDns, published: list[str]) -> str:
    out = ok("dkim", "keygen", domain, "--selector", selector, "--algorithm", algorithm,
             site=site)
    (record_line,) = [x for x in out.splitlines() if "IN TXT" in x]
    name = f"{selector}._domainkey.{domain}"
    assert record_line.startswith(name + ". IN TXT ( ")
    strings = record_line.split("( ", 1)[1].rsplit(" )", 1)[0]
    dns_server.server.set(name, "TXT", [strings])
    published.append(name)
    return name


def verifier(dns_server: ThreadedDns) -> TxtResolver:
    return TxtResolver([dns_server.nameserver], 2)


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
async def test_internal_mail_is_signed_and_verifies_against_the_published_key(
        example_site: Path, sink: Sink, dns_server: ThreadedDns, published: list[str],
        algorithm: str) -> None:
    prepare(example_site, sink.port)
    keygen(example_site, SITE_DOMAIN, "t1", algorithm, dns_server, published)
    listing = ok("dkim", "list", "--check", site=example_site)
    assert listing.splitlines() == [f"{SITE_DOMAIN}\tt1\t{algorithm}\tsigns\tpublished"]
    server = await start(example_site)
    try:
        def send() -> None:
            with client(server.ports["mx"], RELAY_IP) as c:
                c.sendmail(f"rt@{SITE_DOMAIN}", ["carol@example.net"],
                           message(f"rt@{SITE_DOMAIN}", "carol@example.net", "signed"))
        await asyncio.to_thread(send)
        await wait_for(lambda: len(sink.messages) == 1)
    finally:
        await asyncio.to_thread(server.stop)
    content = sink.messages[0].content
    assert content.startswith(b"DKIM-Signature: ")
    want = b"a=ed25519-sha256" if algorithm == "ed25519" else b"a=rsa-sha256"
    assert want in content.split(b"\r\n\r\n")[0]
    assert dkim.verify(content, dnsfunc=verifier(dns_server).dkimpy)
    # and a changed header breaks it: the test would notice a signature that covers nothing
    assert not dkim.verify(content.replace(b"Subject: signed", b"Subject: changed"),
                           dnsfunc=verifier(dns_server).dkimpy)


async def test_submission_and_local_submission_are_signed(
        example_site: Path, sink: Sink, dns_server: ThreadedDns, published: list[str]) -> None:
    ca = trustme.CA()
    prepare(example_site, sink.port, ca=ca)
    r = run("users", "add", "alice", "--address", f"alice@{SITE_DOMAIN}", "--password-stdin",
            site=example_site, input="correct horse\n")
    assert r.returncode == 0, r.stderr
    keygen(example_site, SITE_DOMAIN, "t5", "rsa", dns_server, published)
    server = await start(example_site)
    try:
        def submit() -> None:
            with client(server.ports["submission"], OUTSIDE_IP) as c:
                c.starttls(context=tls_context(ca))
                c.login("alice", "correct horse")
                c.sendmail(f"alice@{SITE_DOMAIN}", ["carol@example.net"],
                           message(f"alice@{SITE_DOMAIN}", "carol@example.net", "submitted"))
        await asyncio.to_thread(submit)
        p = await asyncio.to_thread(
            subprocess.run, [SENDMAIL, "-f", f"rt@{SITE_DOMAIN}", "dan@example.net"],
            input=message(f"rt@{SITE_DOMAIN}", "dan@example.net", "picked up"),
            capture_output=True, env={**os.environ, "POSTROOM_SITE": str(example_site)})
        assert p.returncode == 0, p.stderr
        await wait_for(lambda: len(sink.messages) == 2)
    finally:
        await asyncio.to_thread(server.stop)
    for m in sink.messages:
        assert m.content.startswith(b"DKIM-Signature: ")
        assert dkim.verify(m.content, dnsfunc=verifier(dns_server).dkimpy), m.rcpt_tos


@pytest.mark.parametrize("base_url", ["", "https://lists.inf.example.ac.uk"])
async def test_list_post_is_signed_and_arc_sealed(
        example_site: Path, sink: Sink, dns_server: ThreadedDns, published: list[str],
        base_url: str) -> None:
    """One ARC set for the post, a DKIM signature per copy: with a web base each copy
    has the member's own one-click link, and the signature covers it (RFC 8058)."""
    prepare(example_site, sink.port,
            extra=f'\n[web]\nbase_url = "{base_url}"\n' if base_url else "")
    keygen(example_site, SITE_DOMAIN, "t2", "rsa", dns_server, published)
    ok("db", "upgrade", site=example_site)
    ok("lists", "create", LIST, "--owner", "owner@example.net", site=example_site)
    ok("lists", "set", LIST, "subject_prefix=[physics] ", "footer=Physics footer",
       site=example_site)
    ok("members", "add", LIST, "ann@example.net", "bob@example.org", site=example_site)
    server = await start(example_site, workers=2)
    try:
        await asyncio.to_thread(send_from_upstream, server, "ann@example.net", LIST,
                                message("ann@example.net", LIST, "arc post"))
        await wait_for(lambda: len(sink.messages) == 2)
    finally:
        await asyncio.to_thread(server.stop)
    dns = verifier(dns_server).dkimpy
    for m in sink.messages:
        content = m.content
        msg = email.message_from_bytes(content, policy=email.policy.default)
        assert msg["Subject"] == "[physics] arc post"      # decorated before signing
        assert f"d={SITE_DOMAIN}" in str(msg["DKIM-Signature"]).replace(" ", "")
        assert dkim.verify(content, dnsfunc=dns)
        cv, _, reason = dkim.arc_verify(content, dnsfunc=dns)
        assert cv == dkim.CV_Pass, reason
        assert "i=1" in str(msg["ARC-Seal"]) and "cv=none" in str(msg["ARC-Seal"])
        aar = str(msg["ARC-Authentication-Results"])
        assert "mail.inf.example.ac.uk" in aar and "dkim=none" in aar
        signed = str(msg["DKIM-Signature"]).replace(" ", "").replace("\n", "").lower()
        assert "list-unsubscribe" in signed.split("h=")[1].split(";")[0]
        if base_url:
            assert "list-unsubscribe-post" in signed.split("h=")[1].split(";")[0]
    unsubscribe = {str(email.message_from_bytes(m.content, policy=email.policy.default)
                       ["List-Unsubscribe"]) for m in sink.messages}
    assert len(unsubscribe) == (2 if base_url else 1)  # each member's own link
    seals = {str(email.message_from_bytes(m.content, policy=email.policy.default)["ARC-Seal"])
             for m in sink.messages}
    assert len(seals) == 1  # sealed once for both copies


async def test_forwarded_signed_mail_is_sealed_with_dkim_pass(
        example_site: Path, sink: Sink, dns_server: ThreadedDns, published: list[str],
        tmp_path: Path) -> None:
    prepare(example_site, sink.port, extra='\n[arc]\nauthserv_id = "hub.inf.example.ac.uk"\n')
    keygen(example_site, SITE_DOMAIN, "t3", "rsa", dns_server, published)
    # the author's own domain signs the message and publishes its key
    theirs = generate(tmp_path / "theirs", "example.com", "ext", "rsa")
    dns_server.server.set(theirs.dns_name, "TXT", [txt_strings(theirs.dns_record())])
    published.append(theirs.dns_name)
    body = message("alice@example.com", f"neilb@{SITE_DOMAIN}", "forwarded and sealed")
    # a forged result under our name, which must not survive
    body = b"Authentication-Results: hub.inf.example.ac.uk; dkim=pass header.d=evil\r\n" + body
    signed = dkim.sign(body, b"ext", b"example.com", theirs.private,
                       canonicalize=(b"relaxed", b"relaxed")) + body
    server = await start(example_site)
    try:
        await asyncio.to_thread(send_from_upstream, server, "alice@example.com",
                                f"neilb@{SITE_DOMAIN}", signed)
        await wait_for(lambda: len(sink.messages) == 1)
    finally:
        await asyncio.to_thread(server.stop)
    content = sink.messages[0].content
    assert sink.messages[0].mail_from.startswith("SRS0=")
    dns = verifier(dns_server).dkimpy
    assert dkim.verify(content, dnsfunc=dns)  # the author's signature survived forwarding
    cv, _, reason = dkim.arc_verify(content, dnsfunc=dns)
    assert cv == dkim.CV_Pass, reason
    msg = email.message_from_bytes(content, policy=email.policy.default)
    ours = [str(v) for v in msg.get_all("Authentication-Results", [])]
    assert len(ours) == 1 and "dkim=pass header.d=example.com header.s=ext" in ours[0]
    assert "evil" not in content.decode()
    assert "dkim=pass header.d=example.com" in str(msg["ARC-Authentication-Results"])


async def test_inbound_mail_to_a_local_mailbox_is_neither_signed_nor_sealed(
        example_site: Path, sink: Sink, dns_server: ThreadedDns, published: list[str]) -> None:
    prepare(example_site, sink.port)
    keygen(example_site, SITE_DOMAIN, "t4", "rsa", dns_server, published)
    server = await start(example_site)
    try:
        await asyncio.to_thread(send_from_upstream, server, "alice@example.com",
                                f"rt@{SITE_DOMAIN}", message("alice@example.com", "rt", "local"))
        new = example_site / "mail/rt/new"
        await wait_for(lambda: new.exists() and any(new.iterdir()))
    finally:
        await asyncio.to_thread(server.stop)
    (delivered,) = list(new.iterdir())
    head = delivered.read_bytes().split(b"\r\n\r\n")[0].split(b"\n\n")[0]
    assert b"DKIM-Signature" not in head and b"ARC-Seal" not in head
