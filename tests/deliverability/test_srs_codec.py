"""The SRS codec: forward and reverse, SRS1 wrapping, rotation, expiry, forgery; the
hypothesis round trip."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom.srs import Srs, SrsError, is_srs, secrets
from postroom.srs.codec import day_stamp, stamp_age

NOW = 1_764_590_400.0  # 2025-12-01
SRS = Srs((b"secret-one",), max_age=21)
ALIAS = "inf.example.ac.uk"


def test_srs0_form_and_reverse() -> None:
    out = SRS.forward("alice@example.com", ALIAS, NOW)
    local, _, domain = out.rpartition("@")
    assert domain == ALIAS
    kind, hash_, tt, d, user = local.split("=", 4)
    assert (kind, len(hash_), tt, d, user) == ("SRS0", 4, day_stamp(NOW), "example.com",
                                               "alice")
    assert SRS.reverse(local, NOW) == "alice@example.com"


def test_srs1_wraps_another_forwarders_srs0_and_reverses_to_it() -> None:
    theirs = Srs((b"their-secret",)).forward("bob@example.org", "relay.example.net", NOW)
    ours = SRS.forward(theirs, ALIAS, NOW)
    assert ours.startswith("SRS1=") and "=relay.example.net==" in ours
    assert SRS.reverse(ours.rpartition("@")[0], NOW) == theirs
    # an SRS1 forwarded once more keeps the first relay, and stays as short
    again = Srs((b"third",)).forward(ours, "x.example", NOW)
    assert "=relay.example.net==" in again and len(again) - len("x.example") == \
        len(ours) - len(ALIAS)


def test_forged_hash_is_refused() -> None:
    local = SRS.forward("alice@example.com", ALIAS, NOW).rpartition("@")[0]
    forged = local.replace("=example.com=", "=evil.example=")
    with pytest.raises(SrsError, match="hash does not match"):
        SRS.reverse(forged, NOW)
    with pytest.raises(SrsError, match="hash does not match"):
        Srs((b"another",)).reverse(local, NOW)


def test_expired_and_still_valid() -> None:
    local = SRS.forward("alice@example.com", ALIAS, NOW).rpartition("@")[0]
    assert SRS.reverse(local, NOW + 21 * 86400) == "alice@example.com"
    with pytest.raises(SrsError, match="expired"):
        SRS.reverse(local, NOW + 22 * 86400)


def test_hash_survives_lower_casing_of_the_local_part() -> None:
    local = SRS.forward("Alice@Example.com", ALIAS, NOW).rpartition("@")[0]
    assert SRS.reverse(local.lower(), NOW) == "alice@example.com"


def test_rotation_old_secret_still_accepted() -> None:
    old = Srs((b"old",)).forward("alice@example.com", ALIAS, NOW).rpartition("@")[0]
    rotated = Srs((b"new", b"old"))
    assert rotated.reverse(old, NOW) == "alice@example.com"
    assert "SRS0=" + Srs((b"new",)).hash(day_stamp(NOW), "example.com", "alice") in \
        rotated.forward("alice@example.com", ALIAS, NOW)


@pytest.mark.parametrize("local", ["SRS0", "SRS0=", "SRS0=abcd=AA=x", "SRS1=abcd",
                                   "SRS0=abcd=!!=example.com=alice", "SRS1=abcd=host"])
def test_malformed_is_refused(local: str) -> None:
    with pytest.raises(SrsError):
        SRS.reverse(local, NOW)


def test_is_srs() -> None:
    assert is_srs("SRS0=x=y=z=w") and is_srs("srs1+x=y==z") and not is_srs("srsly")


def test_stamp_wraps_every_1024_days() -> None:
    assert stamp_age(day_stamp(NOW), NOW + 1024 * 86400) == 0
    assert stamp_age(day_stamp(NOW), NOW + 3 * 86400) == 3


_local = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[A-Za-z0-9_=+-]{1,8}){0,2}",
                       fullmatch=True)
_domain = st.from_regex(r"[a-z0-9]{1,12}(\.[a-z0-9-]{0,10}[a-z0-9])?\.[a-z]{2,6}",
                        fullmatch=True)


@given(local=_local, domain=_domain, secret=st.binary(min_size=1, max_size=40),
       age=st.integers(min_value=0, max_value=21), when=st.floats(0, 4e9))
def test_round_trip(local: str, domain: str, secret: bytes, age: int, when: float) -> None:
    codec = Srs((secret,), max_age=21)
    out = codec.forward(f"{local}@{domain}", ALIAS, when)
    back = codec.reverse(out.rpartition("@")[0], when + age * 86400)
    if is_srs(local):  # the sender was itself SRS: one level is taken off
        assert back.endswith(f"@{domain}")
    else:
        assert back.lower() == f"{local}@{domain}".lower()


def test_secrets_file_ensure_rotate_and_prune(tmp_path: Path) -> None:
    path = tmp_path / "keys/srs.secret"
    assert secrets.ensure(path) and not secrets.ensure(path)
    assert path.stat().st_mode & 0o777 == 0o600
    (first, _made), = secrets.read(path)
    now = time.time()
    assert secrets.rotate(path, 21, now) == (2, 0)
    entries = secrets.read(path)
    assert len(entries) == 2 and entries[1][0] == first
    # 22 days on: the first secret's successor is older than max_age, so it goes
    assert secrets.rotate(path, 21, now + 22 * 86400) == (2, 1)
    assert first not in [s for s, _ in secrets.read(path)]
