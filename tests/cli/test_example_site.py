"""The example site (`postroom init DIR --example`, what `make run` serves) keeps its mail on
this machine: every address its maps know that is not delivered here goes to the outbox on
the loopback, never to a host found in DNS; and the outbox (scripts/outbox.py) keeps what
it is given in a Maildir."""

from __future__ import annotations

import ipaddress
import re
import signal
import smtplib
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from postroom.routing import maps
from tests.conftest import ROOT, run

OUTBOX = ROOT / "scripts" / "outbox.py"
OUTSIDE = ["someone@example.net", "friend@gmail.example.com", "x@uni-elsewhere.example.edu"]

_ROUTE = re.compile(r"^(?P<address>.*)\.\.\. deliverable: mailer (?P<mailer>\w+)"
                    r"(?:, host (?P<host>[^,]+))?, user (?P<user>.*)$")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("example") / "site"
    r = run("init", str(home), "--example")
    assert r.returncode == 0, r.stderr
    return home


def map_addresses(home: Path) -> list[str]:
    """An address for every key of every map the profile names, and every target in them."""
    profile = tomllib.loads((home / "postroom.toml").read_text())
    domain = profile["site"]["domains"][0]
    found: list[str] = []
    for rel in profile["maps"]["aliases"] + profile["maps"]["forwards"]:
        for name, (targets, _) in maps.read_aliases(home / rel).entries.items():
            found.append(f"{name}@{domain}")
            found += [t for t in targets if "@" in t]  # type: ignore[attr-defined]
    for rel in profile["maps"]["virtusertable"]:
        for key, (target, _) in maps.read_virtusertable(home / rel).entries.items():
            found.append(key.replace("+*@", "+x@") if not key.startswith("@")
                         else f"anyone{key}")
            if "@" in str(target):
                found.append(str(target).replace("%1", "anyone"))
    for rel in profile["maps"]["mailertable"]:
        for key in maps.read_mailertable(home / rel).entries:
            found.append("someone@example.net" if key == "." else
                         f"someone@x{key}" if key.startswith(".") else f"someone@{key}")
    return found


def routes(home: Path, addresses: list[str]) -> list[dict[str, str]]:
    r = run("verify", *addresses, site=home)
    assert r.returncode in (0, 67), r.stderr  # 67: some are refused, which keeps them here
    found = [m.groupdict() for m in map(_ROUTE.match, r.stdout.splitlines()) if m]
    assert found, r.stdout
    return found


def is_loopback_literal(host: str) -> bool:
    """``[127.0.0.1]:2526``: an address in brackets, so no DNS is asked, on this machine."""
    m = re.fullmatch(r"\[(?:IPv6:)?([^\]]+)\](?::\d+)?", host)
    if m is None:
        return False
    try:
        return ipaddress.ip_address(m.group(1)).is_loopback
    except ValueError:
        return False


def test_every_remote_route_is_the_loopback(example: Path) -> None:
    addresses = map_addresses(example) + OUTSIDE
    assert len(addresses) > 20
    found = routes(example, addresses)
    remote = [r for r in found if r["mailer"] in ("esmtp", "relay")]
    assert {r["user"] for r in remote} >= {"neilb@staffmail.example.ac.uk",
                                           "p.visitor@uni-elsewhere.example.edu",
                                           "someone@x.ed.example.ac.uk", *OUTSIDE}
    assert [r for r in remote if not is_loopback_literal(r["host"])] == []
    # the rest stays here: Maildirs, the site's own file, lists, and the Mailman pipe
    assert {r["mailer"] for r in found} - {"esmtp", "relay"} <= {"local", "file", "list", "prog"}


def test_file_target_is_inside_the_site_home(example: Path) -> None:
    [route] = routes(example, ["mail-archive"])
    assert route["mailer"] == "file"
    archive = Path(route["user"])
    assert archive == example.resolve() / "mail" / "mail-archive.mbox"
    assert archive.parent.is_dir()
    leftover = [p for p in example.rglob("*") if p.is_file() and b"@SITE_HOME@" in p.read_bytes()]
    assert leftover == []


def start_outbox(directory: Path, *command: str) -> tuple[subprocess.Popen[str], int]:
    argv = [sys.executable, str(OUTBOX), "--port", "0", str(directory)]
    proc = subprocess.Popen([*argv, "--", *command] if command else argv,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()  # nothing more is printed
    m = re.search(r"127\.0\.0\.1:(\d+)", line)
    assert m, line
    return proc, int(m.group(1))


def test_outbox_keeps_each_message(tmp_path: Path) -> None:
    proc, port = start_outbox(tmp_path / "outbox")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.sendmail("alice@inf.example.ac.uk", ["friend@example.net", "bcc@example.org"],
                       b"Subject: hello\r\n\r\nfrom the example\r\n")
        new = tmp_path / "outbox" / "new"
        deadline = time.monotonic() + 10
        while not list(new.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        [kept] = list(new.iterdir())
        assert kept.read_bytes() == (b"Return-Path: <alice@inf.example.ac.uk>\n"
                                     b"Delivered-To: friend@example.net\n"
                                     b"Delivered-To: bcc@example.org\n"
                                     b"Subject: hello\n\nfrom the example\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_outbox_runs_a_command_and_exits_with_its_status(tmp_path: Path) -> None:
    proc, port = start_outbox(tmp_path / "outbox", sys.executable, "-c",
                              "import sys; sys.exit(3)")
    assert proc.wait(10) == 3
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", port, timeout=5)
