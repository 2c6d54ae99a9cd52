"""A typo in postroom.toml must not lock the postmaster out: the commands that need only
the site home (the queue, quiesce, resume, status) warn and go on, as the running server
goes on with its last good profile; the commands that need the profile say so and exit 78."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from postroom.errors import EX_CONFIG
from tests.conftest import POSTROOM, SENDMAIL

LAST_GOOD = "a running server keeps running the last good profile"
GOING_ON = (f"postroom: warning: going on without the profile; {LAST_GOOD} "
            "(fix the file, then run 'postroom reload')\n")


def postroom(site: Path, *args: str, by_env: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the command as the postmaster does: ``--site DIR``, or ``POSTROOM_SITE``."""
    env = {**os.environ, "TZ": "UTC"}
    if by_env:
        env["POSTROOM_SITE"] = str(site)
        argv = [POSTROOM, *args]
    else:
        env.pop("POSTROOM_SITE", None)
        argv = [POSTROOM, *args, "--site", str(site)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def line_of(path: Path, text: str) -> int:
    return next(no for no, line in enumerate(path.read_text().splitlines(), 1) if line == text)


@pytest.fixture
def site(example_site: Path) -> Path:
    """The example site with one message queued while its profile was still good."""
    r = subprocess.run([SENDMAIL, "-f", "root", "rt"], input=b"Subject: t\n\nhi\n",
                       capture_output=True, timeout=60,
                       env={**os.environ, "POSTROOM_SITE": str(example_site)})
    assert r.returncode == 0, r.stderr
    return example_site


@pytest.fixture
def quoted_port(site: Path) -> tuple[Path, str]:
    """``port = "2525"``: good TOML, but a string where the listener's port number goes."""
    profile = site / "postroom.toml"
    line = line_of(profile, "port = 2525")
    profile.write_text(profile.read_text().replace("port = 2525\n", 'port = "2525"\n'))
    error = (f'{profile}:{line}: listeners.0.port: expected an integer, not the string "2525" '
             "(fix: write port = 2525, without quotes)")
    return site, error


@pytest.fixture
def bad_toml(site: Path) -> tuple[Path, int]:
    """An unclosed table header: not TOML at all."""
    profile = site / "postroom.toml"
    line = line_of(profile, "[limits]")
    profile.write_text(profile.read_text().replace("[limits]\n", "[limits\n"))
    return site, line


def queued_id(site: Path) -> str:
    r = postroom(site, "queue")
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()[1].split()[0]


def test_status_says_the_profile_is_broken_and_no_server_runs(
        quoted_port: tuple[Path, str]) -> None:
    site, error = quoted_port
    r = postroom(site, "status")
    assert r.returncode == 0
    assert r.stderr == f"postroom: warning: {error}\n" + GOING_ON
    line = line_of(site / "postroom.toml", 'port = "2525"')
    assert r.stdout.splitlines() == [
        f"site: {site}",
        "server: not running: no postroom serve runs for this site, so no mail is taken or "
        "delivered",
        "mode: not quiesced by postroom quiesce (the profile's own quiescent setting cannot "
        "be read)",
        f"profile: BROKEN at {site / 'postroom.toml'}:{line}; no server can start until it "
        "is fixed",
        "queue: 1 message(s)",
        "last export: none recorded (serve runs it on its schedule)",
        "last backup: none recorded (serve runs it on its schedule)",
    ]


def test_status_json_carries_the_error(quoted_port: tuple[Path, str]) -> None:
    site, error = quoted_port
    r = postroom(site, "status", "--json", by_env=True)
    assert r.returncode == 0
    assert r.stderr == f"postroom: warning: {error}\n" + GOING_ON
    info = json.loads(r.stdout)
    assert info == {"site": str(site), "running": False, "pid": None, "quiescent": False,
                    "quiescent_reason": "", "queued": 1, "profile_error": error,
                    "last_export": None, "last_backup": None}


def test_quiesce_and_resume_with_bad_toml(bad_toml: tuple[Path, int]) -> None:
    site, line = bad_toml
    r = postroom(site, "quiesce", "--reason", "restoring", by_env=True)
    assert r.returncode == 0
    assert r.stdout == "quiescent: listeners answer 421 4.3.2, no delivery, no list posts\n"
    warning, going_on = r.stderr.splitlines(keepends=True)
    assert warning.startswith(f"postroom: warning: {site / 'postroom.toml'}:{line}: "
                              "not valid TOML: ")
    assert going_on == GOING_ON
    assert (site / "state/quiescent").read_text() == "restoring\n"
    assert "mode: QUIESCENT (restoring)" in postroom(site, "status").stdout

    r = postroom(site, "resume")
    assert r.returncode == 0 and r.stderr.endswith(GOING_ON)
    assert r.stdout == ("accepting and delivering mail, unless the last good profile says "
                        "quiescent = true\n")
    assert not (site / "state/quiescent").exists()
    log = (site / "log/mail.log").read_text()
    assert "quiescent: restoring" in log and "resumed: taking and delivering mail" in log


@pytest.mark.parametrize("by_env", [False, True])
def test_queue_commands_work(quoted_port: tuple[Path, str], by_env: bool) -> None:
    site, error = quoted_port
    qid = queued_id(site)
    warned = f"postroom: warning: {error}\n" + GOING_ON

    def run(*args: str) -> str:
        r = postroom(site, "queue", *args, by_env=by_env)
        assert (r.returncode, r.stderr) == (0, warned), args
        return r.stdout

    assert f"{qid}  " in run()
    assert f"Queue ID:     {qid}\n" in run("show", qid)
    assert run("hold", qid) == f"{qid}: held\n"
    assert f"{qid}!" in run()
    assert run("release", qid) == f"{qid}: released\n"
    assert run("flush").startswith("0 messages with deferred deliveries rescheduled; "
                                   "no server running")
    assert run("delete", qid) == f"{qid}: deleted\n"
    assert run() == "Mail queue is empty\n"


def test_queue_with_bad_toml(bad_toml: tuple[Path, int]) -> None:
    site, line = bad_toml
    r = postroom(site, "queue")
    assert r.returncode == 0
    assert r.stderr.startswith(f"postroom: warning: {site / 'postroom.toml'}:{line}: ")
    assert r.stdout.startswith("-Queue ID-")


@pytest.mark.parametrize(("args", "command"), [
    (("verify", "rt"), "postroom verify"), (("users", "list"), "postroom users list"),
    (("lists", "list"), "postroom lists list"), (("db", "current"), "postroom db current")])
def test_commands_that_need_the_profile_refuse(quoted_port: tuple[Path, str],
                                               args: tuple[str, ...], command: str) -> None:
    site, error = quoted_port
    r = postroom(site, *args)
    assert (r.returncode, r.stdout) == (EX_CONFIG, "")
    assert r.stderr == (f"postroom: {error}\n"
                        f"postroom: '{command}' needs a good profile; {LAST_GOOD}\n")


def test_no_profile_is_no_site_home(tmp_path: Path) -> None:
    for args in (("status",), ("queue",), ("quiesce",)):
        r = postroom(tmp_path, *args)
        assert r.returncode == EX_CONFIG
        assert r.stderr.startswith(f"postroom: {tmp_path / 'postroom.toml'}: no site profile "
                                   "here (fix: run 'postroom init DIR'")
    assert not (tmp_path / "state").exists() and not (tmp_path / "queue").exists()
