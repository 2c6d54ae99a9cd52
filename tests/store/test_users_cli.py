"""`postroom users` as an operator runs it (the installed command, in a subprocess):
the password policy of add and passwd, disable and enable, sender addresses; and a
disabled user against a running server."""

from __future__ import annotations

import smtplib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from postroom.site import Site
from postroom.store.passwords import MIN_LENGTH, check_strength, common_passwords
from postroom.store.users import (
    LoginCheck,
    add_user,
    addresses_of,
    check_password,
    verify_login,
)
from tests.conftest import run
from tests.server import OUTSIDE_IP, Server, configure_site

GOOD = "staple lantern quietly orbit"
EX_DATAERR, EX_NOUSER, EX_USAGE_CLICK = 65, 67, 2


def users(site: Site | Path, *args: str, input: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    home = site.home if isinstance(site, Site) else site
    return run("users", *args, site=home, input=input)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def refused(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line of a refusal on stderr."""
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def add_alice(site: Site, password: str = GOOD) -> None:
    ok(users(site, "add", "alice", "--address", "alice@inf.example.ac.uk",
             "--address", "a.smith@inf.example.ac.uk", "--password-stdin",
             input=password + "\n"))


# -- the password policy (the same on every backend: SQLite only)

@pytest.fixture
def sqlite_site(make_site: Callable[..., Site]) -> Site:
    from postroom.store.db import upgrade

    site = make_site()
    upgrade(site)
    return site


FIX = "(fix: a few unrelated words make a long password that is easy to remember)"


@pytest.mark.parametrize(("password", "reason"), [
    ("tiny", "it is 4 characters long, and needs at least 12"),
    ("eleven char", "it is 11 characters long, and needs at least 12"),
    ("password1234", "it is one of the most common passwords, which are tried first"),
    ("QwertyUiopAsdf", "it is one of the most common passwords, which are tried first"),
    ("Sunshine!!2024", "it is one of the most common passwords with digits or "
                       "punctuation added, which are tried early"),
    ("alice1234567", "it is the login name with digits or punctuation added"),
    ("a.smith@2024!", "it is the local part of the sender address a.smith@inf.example.ac.uk "
                      "with digits or punctuation added"),
    ("mnbvcxzlkjhgf", "it is a run along the keyboard or the alphabet"),
    ("xyzxyzxyzxyz", "it is a short piece repeated"),
    ("monkeymonkey", "it is a short piece repeated"),
])
def test_add_refuses_a_weak_password(sqlite_site: Site, password: str, reason: str) -> None:
    done = users(sqlite_site, "add", "alice", "--address", "alice@inf.example.ac.uk",
                 "--address", "a.smith@inf.example.ac.uk", "--password-stdin",
                 input=password + "\n")
    assert refused(done, EX_DATAERR) == f"postroom: password refused: {reason} {FIX}"
    assert password not in done.stderr  # never echoed
    assert ok(users(sqlite_site, "list")) == "no users\n"


def test_the_login_itself_is_refused(sqlite_site: Site) -> None:
    done = users(sqlite_site, "add", "administrator1", "--password-stdin",
                 input="Administrator1\n")
    assert "it is one of the most common passwords" in refused(done, EX_DATAERR)
    done = users(sqlite_site, "add", "j.random.hacker", "--password-stdin",
                 input="J.Random.Hacker\n")
    assert refused(done, EX_DATAERR) == f"postroom: password refused: it is the login name {FIX}"


def test_add_with_a_good_password_and_the_prompt(ready_site: Site) -> None:
    add_alice(ready_site)
    assert check_password(ready_site, "alice", GOOD)
    out = ok(users(ready_site, "add", "bob", input=f"{GOOD} two\n{GOOD} two\n"))
    assert "user bob added (no sender addresses)" in out
    assert check_password(ready_site, "bob", f"{GOOD} two")


def test_a_taken_login_is_refused_before_the_password_is_asked(ready_site: Site) -> None:
    add_alice(ready_site)
    done = users(ready_site, "add", "alice")  # no input: a prompt would fail differently
    assert refused(done, EX_DATAERR).startswith("postroom: user 'alice' already exists")
    assert "Password" not in done.stdout


def test_passwd_applies_the_policy_and_keeps_the_old_password(ready_site: Site) -> None:
    add_alice(ready_site)
    done = users(ready_site, "passwd", "alice", "--password-stdin", input="A.Smith\n")
    assert refused(done, EX_DATAERR).startswith("postroom: password refused: it is 7 "
                                                "characters long")
    done = users(ready_site, "passwd", "alice", "--password-stdin", input="A.Smith-1234\n")
    assert refused(done, EX_DATAERR) == (
        "postroom: password refused: it is the local part of the sender address "
        f"a.smith@inf.example.ac.uk with digits or punctuation added {FIX}")
    assert check_password(ready_site, "alice", GOOD)
    assert ok(users(ready_site, "passwd", "alice", "--password-stdin",
                    input="new lantern quietly orbit\n")) == "password of alice changed\n"
    assert check_password(ready_site, "alice", "new lantern quietly orbit")
    assert not check_password(ready_site, "alice", GOOD)


def test_passwd_of_an_unknown_user_fails_before_the_prompt(ready_site: Site) -> None:
    done = users(ready_site, "passwd", "ghost")
    assert refused(done, EX_NOUSER) == ("postroom: no user 'ghost' (fix: 'postroom users "
                                        "list' shows the users)")
    assert "Password" not in done.stdout


def test_the_shipped_list() -> None:
    common = common_passwords()
    assert len(common) >= 1000
    assert {"123456", "password", "qwerty", "iloveyou", "password1234"} <= common
    assert all(p == p.casefold() and p.strip() == p for p in common)
    assert MIN_LENGTH == 12
    check_strength(GOOD, login="alice", addresses=["alice@inf.example.ac.uk"])


# -- disable and enable

def test_disable_and_enable(ready_site: Site) -> None:
    add_alice(ready_site)
    assert ok(users(ready_site, "disable", "alice")) == (
        "user alice disabled: AUTH as alice fails from now on, and a session already "
        "logged in can start no further message\n")
    assert verify_login(ready_site, "alice", GOOD) is LoginCheck.DISABLED
    assert verify_login(ready_site, "alice", "wrong") is LoginCheck.FAILED
    assert not check_password(ready_site, "alice", GOOD)
    assert addresses_of(ready_site, "alice") == []  # a logged-in session may send as none
    table = ok(users(ready_site, "list")).splitlines()
    assert table[1].split()[0] == "alice" and table[1].split()[-1] == "disabled"
    assert ok(users(ready_site, "disable", "alice")) == "user alice was already disabled\n"
    assert ok(users(ready_site, "addresses", "alice")) == (
        "alice: a.smith@inf.example.ac.uk, alice@inf.example.ac.uk (disabled: it may send "
        "from none of them until enabled)\n")
    # a new password (say, after a compromise) leaves it disabled
    assert ok(users(ready_site, "passwd", "alice", "--password-stdin",
                    input="fresh lantern quietly orbit\n")) == (
        "password of alice changed (still disabled: 'postroom users enable alice' lets it "
        "log in again)\n")
    assert verify_login(ready_site, "alice", "fresh lantern quietly orbit") \
        is LoginCheck.DISABLED

    assert ok(users(ready_site, "enable", "alice")) == "user alice enabled\n"
    assert verify_login(ready_site, "alice", "fresh lantern quietly orbit") is LoginCheck.OK
    assert addresses_of(ready_site, "alice") == ["a.smith@inf.example.ac.uk",
                                                 "alice@inf.example.ac.uk"]
    assert ok(users(ready_site, "list")).splitlines()[1].split()[-1] == "enabled"
    assert ok(users(ready_site, "enable", "alice")) == "user alice was not disabled\n"
    for command in ("disable", "enable"):
        assert refused(users(ready_site, command, "ghost"), EX_NOUSER).startswith(
            "postroom: no user 'ghost'")


# -- sender addresses

def test_addresses_show_add_and_remove(ready_site: Site) -> None:
    add_alice(ready_site)
    add_user(ready_site, "bob", GOOD, ["bob@inf.example.ac.uk"])
    assert ok(users(ready_site, "addresses", "alice")) == \
        "alice: a.smith@inf.example.ac.uk, alice@inf.example.ac.uk\n"
    assert ok(users(ready_site, "addresses", "alice", "add", "Smith.A@Inf.Example.AC.UK",
                    "alice@inf.example.ac.uk")) == (
        "alice: a.smith@inf.example.ac.uk, alice@inf.example.ac.uk, "
        "smith.a@inf.example.ac.uk\n")
    done = users(ready_site, "addresses", "alice", "add", "bob@inf.example.ac.uk")
    assert refused(done, EX_DATAERR) == ("postroom: sender address bob@inf.example.ac.uk "
                                         "already belongs to user 'bob'")
    done = users(ready_site, "addresses", "alice", "add", "not an address")
    assert refused(done, EX_DATAERR).startswith("postroom: sender address 'not an address'")
    assert ok(users(ready_site, "addresses", "alice", "remove",
                    "a.smith@inf.example.ac.uk", "SMITH.A@inf.example.ac.uk")) == \
        "alice: alice@inf.example.ac.uk\n"
    done = users(ready_site, "addresses", "alice", "remove", "alice@inf.example.ac.uk",
                 "bob@inf.example.ac.uk")
    assert refused(done, EX_DATAERR) == (
        "postroom: user 'alice' has no sender address bob@inf.example.ac.uk (fix: "
        "'postroom users addresses alice' lists them)")
    assert addresses_of(ready_site, "alice") == ["alice@inf.example.ac.uk"]  # no change
    assert ok(users(ready_site, "addresses", "alice", "remove",
                    "alice@inf.example.ac.uk")) == "alice: no sender addresses\n"
    assert addresses_of(ready_site, "bob") == ["bob@inf.example.ac.uk"]


def test_addresses_usage_errors(ready_site: Site) -> None:
    add_alice(ready_site)
    assert users(ready_site, "addresses", "alice", "add").returncode == EX_USAGE_CLICK
    assert users(ready_site, "addresses", "alice", "drop", "x@y.example").returncode == \
        EX_USAGE_CLICK
    assert refused(users(ready_site, "addresses", "ghost"), EX_NOUSER).startswith(
        "postroom: no user 'ghost'")


# -- against a running server

@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_a_disabled_user_cannot_log_in_or_send(example_site: Path, ca: trustme.CA) -> None:
    import ssl

    configure_site(example_site, ca)
    ok(users(example_site, "add", "alice", "--address", "alice@inf.example.ac.uk",
             "--password-stdin", input=GOOD + "\n"))
    tls = ssl.create_default_context()
    ca.configure_trust(tls)
    server = Server(example_site).start()
    try:
        port = server.ports["submissions"]
        with smtplib.SMTP_SSL("127.0.0.1", port, source_address=(OUTSIDE_IP, 0),
                              context=tls, timeout=20) as open_session:
            open_session.login("alice", GOOD)  # logged in before the disable
            ok(users(example_site, "disable", "alice"))
            with smtplib.SMTP_SSL("127.0.0.1", port, source_address=(OUTSIDE_IP, 0),
                                  context=tls, timeout=20) as c, \
                    pytest.raises(smtplib.SMTPAuthenticationError) as e:
                c.login("alice", GOOD)
            assert e.value.smtp_code == 535
            code, _ = open_session.mail("alice@inf.example.ac.uk")
            assert code == 553  # the open session can start no further message
        ok(users(example_site, "enable", "alice"))
        with smtplib.SMTP_SSL("127.0.0.1", port, source_address=(OUTSIDE_IP, 0),
                              context=tls, timeout=20) as c:
            c.login("alice", GOOD)
            assert c.mail("alice@inf.example.ac.uk")[0] == 250
    finally:
        server.stop()
    log = server.log()
    assert ("reject: AUTH from [127.0.0.4]: 535 5.7.8 authentication failed for 'alice' "
            "(user disabled)") in log
