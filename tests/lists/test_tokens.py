"""Tokens: one-click unsubscribe, confirmation with expiry, approval, and VERP addresses,
round trips and forgeries."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom.lists import tokens

SECRET = b"s3cret-of-the-list"
LIST_ID = "staff.lists.example.ac.uk"
ISSUED = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DAY = 86400


def test_unsubscribe_token_round_trip_and_forgeries() -> None:
    token = tokens.unsubscribe_token(SECRET, LIST_ID, "Ann@Example.org")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", token)
    assert tokens.check_unsubscribe_token(SECRET, LIST_ID, "ann@example.org", token)
    assert not tokens.check_unsubscribe_token(SECRET, LIST_ID, "bob@example.org", token)
    assert not tokens.check_unsubscribe_token(SECRET, "other." + LIST_ID, "ann@example.org",
                                              token)
    assert not tokens.check_unsubscribe_token(b"another secret", LIST_ID, "ann@example.org",
                                              token)
    flipped = ("A" if token[0] != "A" else "B") + token[1:]
    assert not tokens.check_unsubscribe_token(SECRET, LIST_ID, "ann@example.org", flipped)
    assert not tokens.check_unsubscribe_token(SECRET, LIST_ID, "ann@example.org", "")
    assert not tokens.check_unsubscribe_token(SECRET, LIST_ID, "ann@example.org", "é" * 22)


def test_confirm_token_round_trip() -> None:
    token = tokens.confirm_token(SECRET, "subscribe", "ann@example.org", ISSUED)
    assert re.fullmatch(r"[a-z2-7]{32}", token)         # safe in LIST-confirm+TOKEN@
    assert tokens.token_issued_at(token) == int(ISSUED.timestamp())
    later = ISSUED + timedelta(days=2)
    assert tokens.verify_confirm_token(SECRET, token, "subscribe", "Ann@example.org",
                                       now=later, max_age=3 * DAY)
    assert tokens.verify_confirm_token(SECRET, token.upper(), "subscribe", "ann@example.org",
                                       now=later, max_age=3 * DAY)   # case folded on the way


@pytest.mark.parametrize(("kind", "address", "now", "max_age"), [
    ("subscribe", "ann@example.org", ISSUED + timedelta(days=4), 3 * DAY),   # expired
    ("subscribe", "ann@example.org", ISSUED - timedelta(hours=1), 3 * DAY),  # from the future
    ("unsubscribe", "ann@example.org", ISSUED, 3 * DAY),                     # other kind
    ("subscribe", "bob@example.org", ISSUED, 3 * DAY),                       # other address
])
def test_confirm_token_refused(kind: str, address: str, now: datetime,
                               max_age: float) -> None:
    token = tokens.confirm_token(SECRET, "subscribe", "ann@example.org", ISSUED)
    assert not tokens.verify_confirm_token(SECRET, token, kind, address, now=now,
                                           max_age=max_age)


def test_confirm_token_cannot_be_made_younger_or_forged() -> None:
    token = tokens.confirm_token(SECRET, "subscribe", "ann@example.org", ISSUED)
    old = int(ISSUED.timestamp())
    # the issue time rewritten to today, the MAC kept: refused
    raw = base64.b32decode(token.upper())
    younger = base64.b32encode((old + DAY).to_bytes(5, "big") + raw[5:]).decode().lower()
    assert not tokens.verify_confirm_token(SECRET, younger, "subscribe", "ann@example.org",
                                           now=old + DAY, max_age=60)
    assert not tokens.verify_confirm_token(b"guess", token, "subscribe", "ann@example.org",
                                           now=old, max_age=60)
    for junk in ("", "not-base32!", "a" * 31, "a" * 40):
        assert not tokens.verify_confirm_token(SECRET, junk, "subscribe", "ann@example.org",
                                               now=old, max_age=60)
        assert tokens.token_issued_at(junk) is None


def test_approval_token() -> None:
    token = tokens.approval_token(SECRET, LIST_ID)
    assert tokens.check_approval_token(SECRET, LIST_ID, f"  {token.upper()} ")
    assert not tokens.check_approval_token(SECRET, "other", token)
    assert not tokens.check_approval_token(b"", LIST_ID, tokens.approval_token(b"", LIST_ID))


@pytest.mark.parametrize(("member", "verp"), [
    ("ann@example.org", "staff-bounces+ann=example.org@lists.example.ac.uk"),
    ("ann+tag@example.org", "staff-bounces+ann+tag=example.org@lists.example.ac.uk"),
    ("a=b@example.org", "staff-bounces+a=b=example.org@lists.example.ac.uk"),
    ("x@sub.example.ac.uk", "staff-bounces+x=sub.example.ac.uk@lists.example.ac.uk"),
])
def test_verp_round_trip(member: str, verp: str) -> None:
    assert tokens.verp_sender("staff", "lists.example.ac.uk", member) == verp
    assert tokens.verp_member(verp, "staff", "lists.example.ac.uk") == member


@pytest.mark.parametrize("address", [
    "staff-bounces@lists.example.ac.uk",                     # the plain bounces address
    "staff-bounces+ann@lists.example.ac.uk",                 # no '='
    "staff-bounces+=example.org@lists.example.ac.uk",        # no local part
    "staff-bounces+ann=@lists.example.ac.uk",                # no domain
    "other-bounces+ann=example.org@lists.example.ac.uk",     # another list
    "staff-bounces+ann=example.org@elsewhere.example",       # another domain
    "staff+ann=example.org@lists.example.ac.uk",
])
def test_verp_member_refuses(address: str) -> None:
    assert tokens.verp_member(address, "staff", "lists.example.ac.uk") is None


def test_verp_is_case_tolerant_on_the_way_back() -> None:
    assert tokens.verp_member("STAFF-Bounces+Ann=Example.ORG@Lists.Example.ac.uk", "staff",
                              "lists.example.ac.uk") == "Ann@example.org"
    with pytest.raises(ValueError):
        tokens.verp_sender("staff", "lists.example.ac.uk", "no-domain")


@given(local=st.from_regex(r"[a-z0-9.+=_-]{1,20}", fullmatch=True),
       domain=st.from_regex(r"[a-z0-9-]{1,10}(\.[a-z0-9-]{1,10}){1,3}", fullmatch=True))
def test_verp_round_trips_any_plain_address(local: str, domain: str) -> None:
    member = f"{local}@{domain}"
    verp = tokens.verp_sender("staff", "lists.example.ac.uk", member)
    assert tokens.verp_member(verp, "staff", "lists.example.ac.uk") == member
