"""`postroom verify` and `postroom-sendmail -bv` on the example site, as a user runs them."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import SENDMAIL, run

STAFF = "host [127.0.0.1]:2526"  # the outbox: the example sends nothing off the machine


def test_example_site_verifies_like_sendmail(example_site: Path) -> None:
    r = run("verify", "neilb", "sys-announce", "rt", "mchen@cogsci.example.ac.uk",
            "anyone@research.example.org", "nobody@cogsci.example.ac.uk", "nosuch",
            site=example_site)
    assert r.stdout.splitlines() == [
        f"neilb@staffmail.example.ac.uk... deliverable: mailer esmtp, {STAFF}, "
        "user neilb@staffmail.example.ac.uk",
        '"|/var/mailman/mail/mailman post sys-announce"... deliverable: mailer prog, '
        'user "|/var/mailman/mail/mailman post sys-announce"',
        "rt... deliverable: mailer local, user rt",
        f"mchen@staffmail.example.ac.uk... deliverable: mailer esmtp, {STAFF}, "
        "user mchen@staffmail.example.ac.uk",
        f"anyone@staffmail.example.ac.uk... deliverable: mailer esmtp, {STAFF}, "
        "user anyone@staffmail.example.ac.uk",
        "nobody@cogsci.example.ac.uk... No such user",
        "nosuch... No such user",
    ]
    assert r.returncode == 67


def test_all_deliverable_exits_zero(example_site: Path, example_template: Path) -> None:
    r = run("verify", "rt", "pvisitor", "mail-archive", site=example_site)
    archive = example_template / "mail/mail-archive.mbox"  # init wrote the template's home
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "rt... deliverable: mailer local, user rt",
        f"p.visitor@uni-elsewhere.example.edu... deliverable: mailer esmtp, {STAFF}, "
        "user p.visitor@uni-elsewhere.example.edu",
        f"{archive}... deliverable: mailer file, user {archive}",
    ]


def test_list_target(example_site: Path) -> None:
    r = run("verify", "postie", site=example_site)
    assert r.stdout.splitlines() == [
        "services-unit... deliverable: mailer list, user services-unit@lists.inf.example.ac.uk"]


def test_include_and_several_targets(example_site: Path) -> None:
    r = run("verify", "unix-admins", "helpdesk", site=example_site)
    assert r.stdout.splitlines() == [
        f"neilb@staffmail.example.ac.uk... deliverable: mailer esmtp, {STAFF}, "
        "user neilb@staffmail.example.ac.uk",
        f"akumar@staffmail.example.ac.uk... deliverable: mailer esmtp, {STAFF}, "
        "user akumar@staffmail.example.ac.uk",
        "rt... deliverable: mailer local, user rt",
        f"help@staffmail.example.ac.uk... deliverable: mailer esmtp, {STAFF}, "
        "user help@staffmail.example.ac.uk",
    ]


def test_explain_shows_maps_and_lines(example_site: Path) -> None:
    r = run("verify", "--explain", "neilb", site=example_site)
    assert f"neilb: forwards {example_site}/maps/forwards:3: neilb -> " \
           "neilb@staffmail.example.ac.uk" in r.stdout
    assert f"mailertable {example_site}/maps/mailertable:2: staffmail.example.ac.uk -> " \
           "esmtp:[127.0.0.1]:2526" in r.stdout


def test_sendmail_bv_is_the_same(example_site: Path) -> None:
    a = run("verify", "neilb", "nosuch", site=example_site)
    env = {**os.environ, "POSTROOM_SITE": str(example_site)}
    import subprocess
    b = subprocess.run([SENDMAIL, "-bv", "neilb", "nosuch"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert b.stdout == a.stdout
    assert b.returncode == a.returncode == 67


def test_broken_map_is_named(example_site: Path) -> None:
    with open(example_site / "maps/aliases", "a") as f:
        f.write("this line is broken\n")
    r = run("verify", "rt", site=example_site)
    assert r.returncode == 78
    assert f"{example_site}/maps/aliases:" in r.stderr and "missing ':'" in r.stderr


def test_reload_reports_good_and_bad(example_site: Path) -> None:
    r = run("reload", site=example_site)
    assert r.returncode == 0 and "maps good" in r.stdout
    (example_site / "maps/virtusertable").write_text("bad-key target\n")
    r = run("reload", site=example_site)
    assert r.returncode == 78
    assert "virtusertable:1: key 'bad-key' must be user@domain or @domain" in r.stderr
    assert "last good version stays in force" in r.stderr


def test_reloader_keeps_last_good(example_site: Path) -> None:
    from postroom.runtime import Reloader

    r = Reloader(example_site)
    before = r.current
    (example_site / "maps/forwards").write_text("neilb neilb@x\n")
    assert r.reload() is False
    assert r.current is before
    assert "forwards:1" in (r.last_error or "")
    assert r.current.resolver.resolve("neilb").routes[0].user == "neilb@staffmail.example.ac.uk"
    (example_site / "maps/forwards").write_text("neilb: neilb@new.example\n")
    assert r.reload() is True
    assert r.current.resolver.resolve("neilb").routes[0].user == "neilb@new.example"
