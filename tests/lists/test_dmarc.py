"""DMARC mitigation: the policy lookup (author domain, then organisational domain) through
a fake resolver, the munge and wrap rewrites, and one lookup through the real dnspython
implementation against the loopback DNS server."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from email.message import EmailMessage, Message

import pytest

from postroom.lists import dmarc, pipeline
from postroom.lists.context import DnsLookupError
from postroom.lists.model import DmarcMitigation, Member, ReplyTo
from tests.dnsserver import DnsServer
from tests.lists.test_pipeline import make_ctx, message, settings

AUTHOR = "ann@mail.strict-example.co.uk"


class FakeDns:
    def __init__(self, records: dict[str, list[str]], failing: frozenset[str] = frozenset()):
        self.records = records
        self.failing = failing
        self.asked: list[str] = []

    def txt(self, name: str) -> list[str]:
        self.asked.append(name)
        if name in self.failing:
            raise DnsLookupError(f"{name}: Timeout")
        return self.records.get(name, [])


@pytest.mark.parametrize(("domain", "org"), [
    ("example.org", "example.org"),
    ("mail.example.org", "example.org"),
    ("a.b.example.org", "example.org"),
    ("inf.example.ac.uk", "example.ac.uk"),
    ("example.co.uk", "example.co.uk"),
    ("Mail.Strict.Example.CO.UK.", "example.co.uk"),
    ("shop.example.com.au", "example.com.au"),
    ("localhost", "localhost"),
])
def test_organisational_domain(domain: str, org: str) -> None:
    assert dmarc.organisational_domain(domain) == org


@pytest.mark.parametrize(("record", "tags"), [
    ("v=DMARC1; p=reject", {"v": "DMARC1", "p": "reject"}),
    ("v=DMARC1;p=quarantine;sp=none;pct=100", {"v": "DMARC1", "p": "quarantine",
                                               "sp": "none", "pct": "100"}),
    ("v=spf1 -all", {}),
    ("p=reject; v=DMARC1", {}),          # v must come first
    ("v=DMARC2; p=reject", {}),
])
def test_parse_record(record: str, tags: dict[str, str]) -> None:
    assert dmarc.parse_record(record) == tags


@pytest.mark.parametrize(("records", "domain", "expected", "asked"), [
    ({"_dmarc.example.org": ["v=DMARC1; p=reject"]}, "example.org", "reject",
     ["_dmarc.example.org"]),
    ({"_dmarc.example.org": ["v=DMARC1; p=reject; sp=quarantine"]}, "lists.example.org",
     "quarantine", ["_dmarc.lists.example.org", "_dmarc.example.org"]),
    ({"_dmarc.example.org": ["v=DMARC1; p=quarantine"]}, "lists.example.org",
     "quarantine", ["_dmarc.lists.example.org", "_dmarc.example.org"]),
    ({"_dmarc.sub.example.org": ["v=DMARC1; p=none"],
      "_dmarc.example.org": ["v=DMARC1; p=reject"]}, "sub.example.org", "none",
     ["_dmarc.sub.example.org"]),
    ({"_dmarc.example.org": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]}, "example.org",
     None, ["_dmarc.example.org"]),                       # two records: none applies
    ({"_dmarc.example.org": ["some other text"]}, "example.org", None,
     ["_dmarc.example.org"]),
    ({}, "x.example.ac.uk", None, ["_dmarc.x.example.ac.uk", "_dmarc.example.ac.uk"]),
])
def test_policy_lookup(records: dict[str, list[str]], domain: str, expected: str | None,
                       asked: list[str]) -> None:
    fake = FakeDns(records)
    assert dmarc.policy(fake, domain) == expected
    assert fake.asked == asked


def _post(author: str = AUTHOR) -> bytes:
    return message(f"From: Ann Author <{author}>", "To: staff@lists.example.ac.uk",
                   "Subject: hello", "Message-ID: <m1@strict-example.co.uk>",
                   "Date: Tue, 01 Dec 2026 10:00:00 +0000", body="Hello.\r\n")


def _from(message_: EmailMessage | Message) -> tuple[str, str]:
    address = message_["From"].addresses[0]
    return address.display_name, address.addr_spec


STRICT = {"_dmarc.strict-example.co.uk": ["v=DMARC1; p=reject"]}


def _run(dns: FakeDns, **changes: object) -> bytes:
    ctx = make_ctx(_post(), settings(**changes), members=[Member(AUTHOR)], sender=AUTHOR,
                   dns=dns)
    assert pipeline.run(ctx).value == "accept"
    assert ctx.outgoing is not None
    return ctx.outgoing


def test_munge_from_for_a_strict_domain() -> None:
    out = message_from_bytes(_run(FakeDns(STRICT)), policy=policy.default)
    assert _from(out) == ("Ann Author via staff", "staff@lists.example.ac.uk")
    assert out["Reply-To"] == "Ann Author <ann@mail.strict-example.co.uk>"
    assert out["Cc"] is None


def test_munge_from_with_reply_to_list_puts_the_author_in_cc() -> None:
    out = message_from_bytes(_run(FakeDns(STRICT), reply_to=ReplyTo.LIST),
                             policy=policy.default)
    assert out["From"].addresses[0].addr_spec == "staff@lists.example.ac.uk"
    assert out["Reply-To"] == "staff@lists.example.ac.uk"
    assert out["Cc"] == "Ann Author <ann@mail.strict-example.co.uk>"


@pytest.mark.parametrize("record", ["v=DMARC1; p=none", "v=DMARC1; p=quarantine"])
def test_only_reject_and_quarantine_are_mitigated(record: str) -> None:
    out = message_from_bytes(_run(FakeDns({"_dmarc.strict-example.co.uk": [record]})),
                             policy=policy.default)
    munged = out["From"].addresses[0].addr_spec == "staff@lists.example.ac.uk"
    assert munged is record.endswith("quarantine")


def test_mitigation_none_leaves_from_alone() -> None:
    out = message_from_bytes(_run(FakeDns(STRICT), dmarc_mitigation=DmarcMitigation.NONE),
                             policy=policy.default)
    assert out["From"] == f"Ann Author <{AUTHOR}>"


def test_a_failed_lookup_mitigates_to_be_safe() -> None:
    fake = FakeDns({}, failing=frozenset({"_dmarc.mail.strict-example.co.uk"}))
    out = message_from_bytes(_run(fake), policy=policy.default)
    assert out["From"].addresses[0].addr_spec == "staff@lists.example.ac.uk"


def test_wrap_puts_the_untouched_post_inside() -> None:
    out = message_from_bytes(_run(FakeDns(STRICT), dmarc_mitigation=DmarcMitigation.WRAP,
                                  subject_prefix="[staff] ", footer="footer\n"),
                             policy=policy.default)
    assert _from(out) == ("Ann Author via staff", "staff@lists.example.ac.uk")
    assert out["Reply-To"] == f"Ann Author <{AUTHOR}>"
    assert out["Subject"] == "[staff] hello"
    assert out["Message-ID"] == "<m1@strict-example.co.uk>"
    assert out["List-Id"] is not None
    assert out.get_content_type() == "multipart/mixed"     # the footer made it mixed
    wrapped, foot = list(out.iter_parts())
    assert wrapped.get_content_type() == "message/rfc822"
    inner = wrapped.get_content()
    assert inner["From"] == f"Ann Author <{AUTHOR}>"
    assert inner["Subject"] == "hello"
    assert inner["List-Id"] is None
    assert str(foot.get_content()).replace("\r\n", "\n") == "footer\n"


def test_the_lists_own_domain_is_never_looked_up() -> None:
    fake = FakeDns(STRICT)
    ctx = make_ctx(_post("bob@lists.example.ac.uk"), members=[Member("bob@lists.example.ac.uk")],
                   sender="bob@lists.example.ac.uk", dns=fake)
    pipeline.run(ctx)
    assert fake.asked == []


async def test_through_dnspython_against_the_loopback_server() -> None:
    async with DnsServer({
        "_dmarc.strict-example.co.uk": {"TXT": ['"v=DMARC1; p=reject; rua=mailto:d@x"']},
        "_dmarc.split.example.org": {"TXT": ['"v=DMARC1; " "p=quarantine"']},
    }) as server:
        resolver = dmarc.DnsTxt([server.nameserver], timeout=2.0)
        # the resolver blocks: run it off the loop the server answers on, as the engine does
        assert await asyncio.to_thread(resolver.txt, "_dmarc.strict-example.co.uk") == [
            "v=DMARC1; p=reject; rua=mailto:d@x"]
        assert await asyncio.to_thread(resolver.txt, "_dmarc.split.example.org") == [
            "v=DMARC1; p=quarantine"]                      # strings joined
        assert await asyncio.to_thread(resolver.txt, "_dmarc.nowhere.example") == []
        ctx = make_ctx(_post(), members=[Member(AUTHOR)], sender=AUTHOR, dns=resolver)
        assert (await asyncio.to_thread(pipeline.run, ctx)).value == "accept"
        assert ctx.outgoing is not None
        out = message_from_bytes(ctx.outgoing, policy=policy.default)
        assert _from(out) == ("Ann Author via staff", "staff@lists.example.ac.uk")
        assert ("_dmarc.mail.strict-example.co.uk", "TXT") in server.queries
        assert ("_dmarc.strict-example.co.uk", "TXT") in server.queries
        server.servfail.add("_dmarc.broken.example")
        with pytest.raises(DnsLookupError):
            await asyncio.to_thread(resolver.txt, "_dmarc.broken.example")


def test_no_system_resolver_under_the_test_suite() -> None:
    from postroom.errors import ConfigError

    with pytest.raises(ConfigError):
        dmarc.DnsTxt([])
