"""The classic relay-test address forms, judged by the resolver: the one verdict SMTP
intake (tests/smtp/test_relay_tricks.py), ``postroom verify`` and local submission give.

``FORMS`` is the behaviour table of docs/configuration.md ("Addresses that are never
routed"), on the example site: our domain ``inf.example.ac.uk``, this host's name
``mail.inf.example.ac.uk``, ``rt`` a local user, every other domain by the mailertable's
``.`` entry to ``[127.0.0.1]:2526``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from postroom import addresses, runtime
from postroom.errors import AddressError
from postroom.intake.pickup import submit_local
from postroom.queue.spool import Spool
from postroom.routing.resolve import Resolver

OUTBOX = "[127.0.0.1]:2526"  # the example's mailertable "." host


@dataclass(frozen=True)
class Verdict:
    """What every judge says of one address. ``code`` 250: accepted, with ``line`` its
    ``verify`` line after ``ADDRESS... ``; else the refusal (``text`` as verify prints it).
    ``remote``: relaying, so a client that may not relay gets ``Relaying denied``."""

    code: int
    status: str
    text: str
    remote: bool = False
    by_parser: bool = False  # aiosmtpd's parser refuses it before RCPT reaches us

    @property
    def accepted(self) -> bool:
        return self.code == 250


def trick(name: str) -> Verdict:
    return Verdict(553, "5.7.1", f"Relaying denied: {name} not accepted")


def syntax(reason: str, *, by_parser: bool = False) -> Verdict:
    return Verdict(553, "5.1.3", reason, by_parser=by_parser)


def local(user: str) -> Verdict:
    return Verdict(250, "2.1.5", f"deliverable: mailer local, user {user}")


def remote(user: str) -> Verdict:
    return Verdict(250, "2.1.5", f"deliverable: mailer esmtp, host {OUTBOX}, user {user}",
                   remote=True)


NO_SUCH_USER = Verdict(550, "5.1.1", "No such user")

FORMS: list[tuple[str, Verdict]] = [
    # the percent hack (Postfix allow_percent_hack, sendmail's %-routing): never routed
    ("user%other.example@inf.example.ac.uk", trick("% hack")),
    ("user%other.example", trick("% hack")),
    ('"user%other.example"@inf.example.ac.uk', trick("% hack")),
    ("user@other.example%inf.example.ac.uk", trick("% hack")),
    ("user%other.example@[127.0.0.1]", trick("% hack")),
    # bang paths (Postfix swap_bangpath): never routed
    ("other.example!user@inf.example.ac.uk", trick("! path")),
    ("other.example!user", trick("! path")),
    # a quoted @ (Postfix resolve_dequoted_address): never routed
    ('"user@other.example"@inf.example.ac.uk', trick("quoted @ in local part")),
    ('"user@other.example"', trick("quoted @ in local part")),
    ('"user\\@other.example"@inf.example.ac.uk', trick("quoted @ in local part")),
    # source routes (RFC 5321 appendix C: a server MAY refuse them), even to a local name
    ("@mail.inf.example.ac.uk:user@other.example", trick("source route")),
    ("@a.example,@b.example:user@other.example", trick("source route")),
    ("@mail.inf.example.ac.uk:rt@inf.example.ac.uk", trick("source route")),
    # two @ (no address at all)
    ("user@other.example@inf.example.ac.uk",
     syntax("more than one @ in address", by_parser=True)),
    # address literals: this host's is a local name, another host's is relaying
    ("user@[192.0.2.1]", remote("user@[192.0.2.1]")),
    ("user@[127.0.0.1]", NO_SUCH_USER),
    ("rt@[127.0.0.1]", local("rt")),
    ("rt@[IPv6:::1]", local("rt")),
    ("user@[0.0.0.0]", syntax("address literal names no host")),
    ("user@[300.0.0.1]", syntax("malformed address literal")),
    # trailing dots: not RFC 5321 syntax, refused rather than passed on as written
    ("rt@inf.example.ac.uk.", syntax("trailing dot in domain", by_parser=True)),
    ("user@other.example.", syntax("trailing dot in domain", by_parser=True)),
    # case: domains never matter, local names not unless the profile says so
    ("RT@INF.EXAMPLE.AC.UK", local("rt")),
    ("rt@Inf.Example.Ac.UK", local("rt")),
    ("rt@MAIL.inf.example.ac.uk", local("rt")),
    ('"rt"@inf.example.ac.uk', local("rt")),
    ("User@Other.EXAMPLE", remote("User@other.example")),
]
IDS = [f for f, _ in FORMS]


@pytest.fixture(scope="module")
def resolver(example_template: Path) -> Resolver:
    return runtime.load_resolver(example_template)


@pytest.mark.parametrize(("form", "verdict"), FORMS, ids=IDS)
def test_resolver_verdict(resolver: Resolver, form: str, verdict: Verdict) -> None:
    res = resolver.resolve(form)
    refusal = res.refusal
    if verdict.accepted:
        assert refusal is None
        assert [r.sendmail_line() for r in res.routes] == [f"{form}... {verdict.text}"]
        assert res.local is not verdict.remote
        return
    assert refusal is not None
    assert (refusal.code, refusal.status, refusal.text) == (
        verdict.code, verdict.status, verdict.text)
    if verdict.status != "5.1.1":  # the address itself, before any map and any client
        assert res.refused is refusal and res.routes == [refusal]


@pytest.mark.parametrize(("form", "verdict"), FORMS, ids=IDS)
def test_angle_brackets_change_nothing(resolver: Resolver, form: str,
                                       verdict: Verdict) -> None:
    assert resolver.resolve(f"<{form}>").refusal == resolver.resolve(form).refusal


def test_local_submission_takes_the_same_verdict(example_site: Path) -> None:
    """postroom-sendmail with every form at once: the refused ones are named with the
    resolver's text, the others queued with the resolver's routes."""
    qid, refused = submit_local(str(example_site), "cron", [f for f, _ in FORMS],
                                b"Subject: forms\r\n\r\nbody\r\n")
    assert refused == [(f, v.text) for f, v in FORMS if not v.accepted]
    assert qid is not None
    with Spool(example_site / "queue") as spool:
        env = spool.load(qid)
    assert [r.address for r in env.recipients] == [f for f, v in FORMS if v.accepted]
    literal = next(r for r in env.recipients if r.address == "user@[192.0.2.1]")
    assert [(d.mailer, d.host, d.user) for d in literal.deliveries] == [
        ("esmtp", OUTBOX, "user@[192.0.2.1]")]


def test_a_trick_in_a_map_target_is_refused_too(tmp_path: Path,
                                                example_template: Path) -> None:
    import shutil

    site = tmp_path / "site"
    shutil.copytree(example_template, site)
    with open(site / "maps/aliases", "a") as f:
        f.write("sneaky: user%other.example@inf.example.ac.uk, rt\n"
                "bangs: other.example!user\n")
    resolver = runtime.load_resolver(site)
    assert [(r.mailer, r.code, r.status) for r in resolver.resolve("sneaky").routes] == [
        ("error", 553, "5.7.1"), ("local", 0, "")]
    assert resolver.resolve("sneaky").refusal is None  # rt still gets it
    assert resolver.resolve("bangs").refusal is not None


@pytest.mark.parametrize(("text", "local", "domain"), [
    ('"rt"@Inf.Example.AC.UK', "rt", "inf.example.ac.uk"),
    ('"a b"@far.example', '"a b"', "far.example"),
    ('"a\\"b"@far.example', '"a\\"b"', "far.example"),
    ("rt", "rt", "inf.example.ac.uk"),
    ("x@[IPv6:2001:DB8::1]", "x", "[ipv6:2001:db8::1]"),
])
def test_parse_normalises(text: str, local: str, domain: str) -> None:
    a = addresses.parse(text, default_domain="inf.example.ac.uk")
    assert (a.local, a.domain) == (local, domain)


@pytest.mark.parametrize("text", [
    '"unterminated@x', '"a"b@x', 'a"b@x', "a b@x", "@x", "x@", "x@a..b", "x@[1.2.3.4",
    "x@[tag:stuff]", "x@[224.0.0.1]", "x@-", "x@a b",
])
def test_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(AddressError) as e:
        addresses.parse(text)
    assert not isinstance(e.value, addresses.RelayTrick)


def test_strip_route_is_for_reverse_paths() -> None:
    assert addresses.strip_route("@a,@b:user@c") == "user@c"
    assert addresses.strip_route("user@c") == "user@c"
    assert addresses.strip_route("<>") == "<>"
    assert addresses.relay_trick("@a,@b:user@c") == "source route"
    assert addresses.relay_trick("user@c") is None
