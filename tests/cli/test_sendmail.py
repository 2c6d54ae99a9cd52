"""`postroom-sendmail`: the command every Unix program calls, as cron would call it."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
from pathlib import Path

from postroom.queue.spool import Spool
from tests.conftest import SENDMAIL


def sendmail(site: Path, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "POSTROOM_SITE": str(site)}
    return subprocess.run([SENDMAIL, *args], input=stdin, capture_output=True, env=env,
                          timeout=30)


def queued(site: Path) -> list[tuple[object, bytes]]:
    with Spool(site / "queue") as spool:
        return [(spool.load(q), spool.read_message(q)) for q in spool.ids()]


def test_queues_message_from_stdin(example_site: Path) -> None:
    r = sendmail(example_site, "-f", "root", "-oi", "rt", "nosuch",
                 stdin=b"Subject: nightly backup\n\nall good\n.\nstill body\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode() == "nosuch... No such user\n"
    ((env, data),) = queued(example_site)
    assert env.sender == "root@inf.example.ac.uk"  # type: ignore[attr-defined]
    assert [x.address for x in env.recipients] == ["rt"]  # type: ignore[attr-defined]
    msg = email.message_from_bytes(data, policy=email.policy.SMTP)
    assert msg["Received"].startswith("(from ") and "with local id" in msg["Received"]
    assert msg["Message-ID"] and msg["Date"]
    assert msg["From"].addresses[0].addr_spec == "root@inf.example.ac.uk"
    assert data.endswith(b"all good\r\n.\r\nstill body\r\n")  # -oi: a lone dot is text
    log = (example_site / "log/mail.log").read_text()
    assert "from=<root@inf.example.ac.uk>" in log and "proto=local" in log


def test_dot_ends_input_without_i(example_site: Path) -> None:
    r = sendmail(example_site, "-f", "root", "rt", stdin=b"Subject: x\n\nbody\n.\nignored\n")
    assert r.returncode == 0
    ((_, data),) = queued(example_site)
    assert data.endswith(b"\r\n\r\nbody\r\n")


def test_t_reads_recipients_and_drops_bcc(example_site: Path) -> None:
    r = sendmail(example_site, "-t", "-f", "cron@inf.example.ac.uk",
                 stdin=b"To: rt, Neil <neilb@inf.example.ac.uk>\nCc: mp-unit\n"
                       b"Bcc: root\nSubject: t\n\nhi\n")
    assert r.returncode == 0, r.stderr
    ((env, data),) = queued(example_site)
    assert [x.address for x in env.recipients] == [  # type: ignore[attr-defined]
        "rt", "neilb@inf.example.ac.uk", "mp-unit", "root"]
    assert b"Bcc:" not in data and b"To: rt, Neil" in data


def test_all_refused_queues_nothing(example_site: Path) -> None:
    r = sendmail(example_site, "nosuch", stdin=b"Subject: x\n\nx\n")
    assert r.returncode == 67
    assert queued(example_site) == []


def test_bp_lists_the_queue(example_site: Path) -> None:
    sendmail(example_site, "-f", "root", "rt", stdin=b"Subject: x\n\nx\n")
    r = sendmail(example_site, "-bp", stdin=b"")
    assert r.returncode == 0
    assert b"root@inf.example.ac.uk" in r.stdout and b"1 Request" in r.stdout


def test_unknown_option_is_a_usage_error(example_site: Path) -> None:
    r = sendmail(example_site, "-X", stdin=b"")
    assert r.returncode == 64 and b"unknown option -X" in r.stderr


def test_help_says_how_to_use_it(example_site: Path) -> None:
    r = sendmail(example_site, "--help", stdin=b"")
    assert r.returncode == 0
    out = r.stdout.decode()
    assert out.startswith("usage: postroom-sendmail")
    assert "-t " in out and "-bv" in out and "POSTROOM_SITE" in out
    assert queued(example_site) == []
