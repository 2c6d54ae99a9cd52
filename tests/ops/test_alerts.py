"""Alerts through a real ``postroom serve``: deferred mail past the profile's limits and
a tripped export shrink guard are logged at every look and mailed to the postmaster once
per period (the example's postmaster is root, a local Maildir, so the alert arrives even
while outside delivery is down)."""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path

import trustme

from tests.conftest import run
from tests.ops.conftest import ask, send
from tests.serve.test_reload import route_to
from tests.server import Server, configure_site

ALERTS = ('\n[alerts]\nevery = "1h"\ndeferred_count = 2\ndeferred_age = "1s"\n'
          'period = "1d"\n')


def maildir(site: Path) -> list[email.message.EmailMessage]:
    box = site / "mail" / "root" / "new"
    out = []
    for p in sorted(box.iterdir()) if box.is_dir() else []:
        m = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        assert isinstance(m, email.message.EmailMessage)
        out.append(m)
    return out


def wait(check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_deferred_mail_and_the_shrink_guard_alert_the_postmaster_once(
        example_site: Path, ca: trustme.CA, closed_port: int) -> None:
    site = example_site
    configure_site(site, ca, extra=ALERTS)
    route_to(site, closed_port)
    (site / "export").mkdir(exist_ok=True)
    (site / "export" / "valid-addresses.txt").write_text(
        "".join(f"user{i}@inf.example.ac.uk\n" for i in range(1000)))  # the guard trips
    server = Server(site, workers=1).start()
    try:
        for i in range(3):
            send(server, "neilb@inf.example.ac.uk", f"stuck {i}")
        wait(lambda: "stat=Deferred" in server.log() and server.log().count("stat=Deferred") >= 3)
        time.sleep(1.2)  # past deferred_age
        reply = ask(site, "run", "alerts")
        assert reply["ok"] is True, reply
        said = str(reply["said"])
        for key in ("deferred-age", "deferred-count", "export"):
            assert key in said
        assert "mailed the postmaster" in said
        wait(lambda: len(maildir(site)) == 1)
        alert = maildir(site)[0]
        assert alert["Subject"].startswith("postroom alert on mail.inf.example.ac.uk: ")
        assert "deferred-count" in alert["Subject"] and "export" in alert["Subject"]
        body = alert.get_content()
        assert "messages are deferred (more than 2)" in body
        assert "export would shrink from 1000" in body
        assert alert["Auto-Submitted"] == "auto-generated"
        assert alert["Return-Path"] == "<>"  # the null sender: nothing bounces back
        # once per period: the next look logs it again but mails nothing
        reply = ask(site, "run", "alerts")
        assert "mailed the postmaster" not in str(reply["said"])
        time.sleep(0.5)
        assert len(maildir(site)) == 1
        # the guard let through: that trouble is over
        assert run("export-addresses", "--force", site=site).returncode == 0
        assert ask(site, "run", "export")["ok"] is True
        reply = ask(site, "run", "alerts")
        assert "over: export" in str(reply["said"])
    finally:
        server.stop()
    log = server.log()
    assert log.count("alert: deferred-count: ") == 3
    assert "alert over: export" in log


def test_a_failed_scheduled_backup_is_trouble(example_site: Path) -> None:
    from postroom.ops.alerts import troubles
    from postroom.runtime import build

    rt = build(example_site)
    state = {"backup": {"ok": False, "said": "backup /srv/backup kept but not promoted: "
                        "3 files against 900", "last_ok": 1.0},
             "export": {"ok": True, "said": "exported 39 addresses", "last_ok": 2.0}}
    found = troubles(rt, state)
    assert [t.key for t in found] == ["backup"]
    assert "the scheduled backup failed: backup /srv/backup kept but not promoted" in \
        found[0].text
    assert troubles(rt, {"backup": {"ok": True}}) == []
