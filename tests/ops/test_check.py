"""``postroom check`` through the real command: a good site passes (warnings allowed),
and each kind of trouble is a FAIL or WARN that names it and the fix, asked of a DNS server
the test runs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import ThreadedDns, run
from tests.server import configure_site

NAMES = ["mail.inf.example.ac.uk", "lists.inf.example.ac.uk"]
PROBES = ('\n[check]\ndeliverable = ["neilb@inf.example.ac.uk", "rt@inf.example.ac.uk"]\n'
          'undeliverable = ["nosuch-user@inf.example.ac.uk"]\n'
          f'names = {json.dumps(NAMES)}\n')


@pytest.fixture
def dns() -> Iterator[ThreadedDns]:
    server = ThreadedDns({
        "mail.inf.example.ac.uk": {"A": ["127.0.0.1"]},
        "lists.inf.example.ac.uk": {"A": ["127.0.0.1"]},
        "inf.example.ac.uk": {"MX": [(10, "mail.inf.example.ac.uk"),
                                     (20, "mailrelay.ed.example.ac.uk")]},
        "mailrelay.ed.example.ac.uk": {"A": ["192.0.2.25"]},
    }).start()
    yield server
    server.stop()


def site_with(site: Path, ca: trustme.CA, dns: ThreadedDns, extra: str = PROBES) -> Path:
    configure_site(site, ca, extra=extra)
    profile = site / "postroom.toml"
    text = profile.read_text()
    start = text.index("[dns]")
    end = text.index("\n[", start + 1)
    profile.write_text(text[:start] + f'[dns]\nnameservers = ["{dns.nameserver}"]\n'
                       f"timeout = 2\n" + text[end:])
    return site


def check(site: Path) -> tuple[int, dict[str, dict[str, Any]], str]:
    done = run("check", "--json", site=site)
    report = json.loads(done.stdout)
    assert report["ok"] is (done.returncode == 0)
    return done.returncode, {i["name"]: i for i in report["items"]}, done.stderr


def test_a_good_site_passes(example_site: Path, ca: trustme.CA, dns: ThreadedDns) -> None:
    site = site_with(example_site, ca, dns)
    assert run("members", "add", "services-unit@lists.inf.example.ac.uk", "ann@example.net",
               site=site).returncode == 0
    rc, items, err = check(site)
    assert rc == 0, (items, err)
    for name in ("profile", "maps", "store", "probe neilb@inf.example.ac.uk",
                 "probe nosuch-user@inf.example.ac.uk", "dns mail.inf.example.ac.uk",
                 "mx inf.example.ac.uk", "certificate", "quiescent", "queue",
                 "list services-unit@lists.inf.example.ac.uk"):
        assert items[name]["status"] == "pass", items[name]
    assert "1 members" in items["list services-unit@lists.inf.example.ac.uk"]["detail"]
    assert "mail.inf.example.ac.uk is here" in items["mx inf.example.ac.uk"]["detail"]
    # what a freshly restored site shows: warnings, not failures
    assert items["export"]["status"] == "warn" and items["backup"]["status"] == "warn"
    text = run("check", site=site)
    assert text.returncode == 0
    assert "PASS  store: " in text.stdout and "failed, " in text.stdout.splitlines()[-1]
    run("quiesce", "--reason", "restoring", site=site)
    rc, items, _ = check(site)
    assert rc == 0 and items["quiescent"]["status"] == "warn"
    assert "restoring" in items["quiescent"]["detail"]


def test_each_kind_of_trouble_fails_naming_it(example_site: Path, ca: trustme.CA,
                                              dns: ThreadedDns) -> None:
    site = site_with(example_site, ca, dns, PROBES.replace(
        '"nosuch-user@inf.example.ac.uk"', '"anything@research.example.org"'))
    dns.server.set("lists.inf.example.ac.uk", "A", ["192.0.2.80"])  # the old machine
    other = ca.issue_cert("smtp.elsewhere.example", not_after=dt.datetime.now(dt.UTC)
                          + dt.timedelta(days=400))
    other.cert_chain_pems[0].write_to_path(str(site / "tls/cert.pem"))
    (site / "state").mkdir(exist_ok=True)
    (site / "state" / "periodic.json").write_text(json.dumps({"export": {
        "ok": False, "said": "ShrinkRefused: export would shrink from 90 to 3 addresses",
        "start": 1, "end": 2, "last_ok": None}}))
    rc, items, _ = check(site)
    assert rc == 1
    probe = items["probe anything@research.example.org"]
    assert probe["status"] == "fail" and "made-up address" in probe["detail"]
    bad_dns = items["dns lists.inf.example.ac.uk"]
    assert bad_dns["status"] == "fail" and "192.0.2.80 is not this machine" in bad_dns["detail"]
    assert items["dns mail.inf.example.ac.uk"]["status"] == "pass"
    cert = items["certificate"]
    assert cert["status"] == "fail" and "not mail.inf.example.ac.uk" in cert["detail"]
    assert items["export"]["status"] == "fail" and "shrink" in items["export"]["detail"]
    # a store behind the schema
    (site / "postroom.db").unlink()
    rc, items, _ = check(site)
    assert items["store"]["status"] == "fail" and items["store"]["fix"] == "postroom db upgrade"


def test_a_certificate_about_to_expire_warns(example_site: Path, ca: trustme.CA,
                                             dns: ThreadedDns) -> None:
    site = site_with(example_site, ca, dns)
    soon = ca.issue_cert("mail.inf.example.ac.uk",
                         not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=5))
    soon.cert_chain_pems[0].write_to_path(str(site / "tls/cert.pem"))
    rc, items, _ = check(site)
    assert rc == 0
    assert items["certificate"]["status"] == "warn"
    assert "expires on" in items["certificate"]["detail"]


def test_a_broken_profile_is_one_failure(example_site: Path) -> None:
    with open(example_site / "postroom.toml", "a") as f:
        f.write("\n[check]\ncert_days = \"two weeks\"\n")
    done = run("check", site=example_site)
    assert done.returncode == 1
    assert "FAIL  profile: " in done.stdout and "check.cert_days" in done.stdout
