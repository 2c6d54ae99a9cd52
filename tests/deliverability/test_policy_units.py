"""Which deliveries SRS rewrites (``srs.policy``), what our Authentication-Results say
(``signing.authresults``, against the test DNS server), and the commands that manage the
keys (``postroom dkim``, ``postroom srs``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom import site as site_mod
from postroom.signing.authresults import assess
from postroom.signing.dnstxt import TxtResolver
from postroom.srs import SrsPolicy, secrets
from tests.conftest import ThreadedDns, run

PRIMARY = "inf.example.ac.uk"


@pytest.fixture
def policy(example_site: Path) -> SrsPolicy:
    with open(example_site / "postroom.toml", "a") as f:
        f.write('\n[srs]\nexclude_domains = ["partner.example"]\n')
    return SrsPolicy.from_site(site_mod.load(example_site))


@pytest.mark.parametrize(("sender", "forwarded", "mailer", "rewritten"), [
    ("alice@example.com", True, "esmtp", True),
    ("alice@example.com", True, "relay", True),
    ("alice@example.com", False, "esmtp", False),     # relayed straight out: not a forward
    ("alice@example.com", True, "local", False),      # a local mailbox
    ("alice@example.com", True, "prog", False),
    ("", True, "esmtp", False),                       # the null sender
    (f"rt@{PRIMARY}", True, "esmtp", False),          # ours
    ("x@cogsci.example.ac.uk", True, "esmtp", False),  # a hosted domain: ours too
    ("bob@partner.example", True, "esmtp", False),    # excluded
    ("bob@mail.partner.example", True, "esmtp", False),  # ... with its subdomains
    ('"a b"@example.com', True, "esmtp", False),      # cannot be carried in a local part
])
def test_return_path(policy: SrsPolicy, sender: str, forwarded: bool, mailer: str,
                     rewritten: bool) -> None:
    out = policy.return_path(sender, forwarded=forwarded, mailer=mailer)
    if rewritten:
        assert out.startswith("SRS0=") and out.endswith(f"@{PRIMARY}")
        assert policy.reverse(out.rpartition("@")[0]) == sender
    else:
        assert out == sender


def test_without_a_secrets_file_srs_is_off(example_site: Path) -> None:
    (example_site / "keys/srs.secret").unlink()
    p = SrsPolicy.from_site(site_mod.load(example_site))
    assert not p.active and not p.is_srs("SRS0=abcd=AA=example.com=alice")
    assert p.return_path("a@example.com", forwarded=True, mailer="esmtp") == "a@example.com"


def test_srs_rotate_keeps_old_bounces_valid(example_site: Path) -> None:
    before = SrsPolicy.from_site(site_mod.load(example_site))
    address = before.return_path("alice@example.com", forwarded=True, mailer="esmtp")
    r = run("srs", "rotate", site=example_site)
    assert r.returncode == 0, r.stderr
    assert "new SRS secret in use; 2 accepted, 0 dropped" in r.stdout
    assert "no server running" in r.stdout
    after = SrsPolicy.from_site(site_mod.load(example_site))
    assert after.reverse(address.rpartition("@")[0]) == "alice@example.com"
    assert after.return_path("alice@example.com", forwarded=True, mailer="esmtp") != address
    assert len(secrets.read(example_site / "keys/srs.secret")) == 2


def test_dkim_keygen_refuses_a_selector_twice_and_list_without_keys(example_site: Path) -> None:
    r = run("dkim", "list", site=example_site)
    assert (r.returncode, r.stdout) == (0, "no DKIM keys (postroom dkim keygen DOMAIN)\n")
    assert run("dkim", "keygen", PRIMARY, "-s", "a1", site=example_site).returncode == 0
    r = run("dkim", "keygen", PRIMARY, "-s", "a1", site=example_site)
    assert r.returncode == 78 and "exists; choose another --selector" in r.stderr
    r = run("dkim", "keygen", PRIMARY, "-s", "bad.selector", site=example_site)
    assert r.returncode == 65 and "not a selector" in r.stderr


@pytest.fixture
def dmarc(dns_server: ThreadedDns) -> Iterator[TxtResolver]:
    dns_server.server.set("_dmarc.example.com", "TXT", ['"v=DMARC1; p=reject"'])
    yield TxtResolver([dns_server.nameserver], 2)
    dns_server.server.remove("_dmarc.example.com")


MESSAGE = (b"Authentication-Results: mx.upstream.test; spf=pass "
           b"smtp.mailfrom=alice@example.com\r\n"
           b"From: Alice <alice@example.com>\r\nSubject: hi\r\n\r\nbody\r\n")


def test_trusted_upstream_results_are_taken_and_align_dmarc(dmarc: TxtResolver) -> None:
    found = assess(MESSAGE, dmarc, ["mx.upstream.test"])
    assert found.results == ["spf=pass smtp.mailfrom=alice@example.com", "dkim=none",
                             "dmarc=pass header.from=example.com"]
    assert found.header("hub.test") == (
        b"Authentication-Results: hub.test;\r\n\tspf=pass smtp.mailfrom=alice@example.com;"
        b"\r\n\tdkim=none;\r\n\tdmarc=pass header.from=example.com\r\n")


def test_untrusted_upstream_results_are_not_believed(dmarc: TxtResolver) -> None:
    found = assess(MESSAGE, dmarc, [])
    assert found.results == ["dkim=none", "dmarc=fail header.from=example.com"]
