"""Fuzz target ``addresses``: ``postroom.addresses`` on any string (lone surrogates
included: aiosmtpd decodes 8-bit arguments with surrogateescape) either returns an Address
or raises AddressError; its helpers never raise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom import addresses
from postroom.errors import AddressError
from tests.fuzz.harness import (
    Target,
    corpus_examples,
    corpus_params,
    fuzz_settings,
    require,
)

TARGET = Target("addresses", hang_after=2.0)
ANY_TEXT = Target("addresses_text", hang_after=2.0)

# the characters that matter to the parser, often; anything else, sometimes
_SPECIAL = st.sampled_from([*'@%!"\\<>[]:,.; \t\r\n\0+=()', "\udcff", "é", "\u2028"])
_ANY = st.characters(codec=None, exclude_categories=())
_CHAR = st.one_of(_SPECIAL, st.sampled_from("abcxyzABC019-_"), _ANY)
_LABEL = st.text(_CHAR, max_size=12)
_DOMAIN = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    st.from_regex(r"\[(?:[0-9.]{0,15}|IPv6:[0-9a-f:]{0,20})\]?", fullmatch=True),
    st.just("inf.example.ac.uk"), st.just(""))
_STRUCTURED = st.builds(
    lambda route, local, ats, domain, angle, pad: " " * pad + (
        ("<" if angle else "") + route + local + "@" * ats + domain + (">" if angle else "")
    ) + " " * pad,
    st.one_of(st.just(""), st.lists(_DOMAIN.map("@".__add__), min_size=1, max_size=2)
              .map(lambda r: ",".join(r) + ":")),
    st.one_of(_LABEL, _LABEL.map(lambda s: f'"{s}"')),
    st.integers(0, 3), _DOMAIN, st.booleans(), st.integers(0, 2))
ADDRESS = st.one_of(
    st.text(_CHAR, max_size=40),
    _STRUCTURED,
    st.text(_CHAR, min_size=500, max_size=600),  # around the 512-character limit
)


def check(address: str, default_domain: str) -> None:
    for helper in (addresses.split, addresses.unquote_local, addresses.relay_trick,
                   addresses.is_address_literal):
        helper(address)  # never raises
    try:
        parsed = addresses.parse(address, default_domain=default_domain)
    except AddressError as e:
        require(isinstance(e.reason, str) and e.reason, f"AddressError without a reason: {e!r}")
        return
    require(isinstance(parsed, addresses.Address), f"parse returned {parsed!r}")
    require(parsed.local, f"empty local part from {address!r}")
    trick = addresses.relay_trick(str(parsed))
    require(trick is None, f"{address!r} parsed to {parsed}, a relay trick ({trick})")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


@corpus_examples("addresses", lambda data: {"address": _decode(data), "default_domain": ""})
@fuzz_settings(500)
@given(address=ADDRESS, default_domain=st.sampled_from(["", "inf.example.ac.uk", "É.x"]))
def test_parse_returns_or_raises_address_error(address: str, default_domain: str) -> None:
    TARGET.check(address.encode("utf-8", "surrogatepass"),
                 lambda: check(address, default_domain))


@corpus_examples("addresses", lambda data: {"address": _decode(data)})
@fuzz_settings(300)
@given(address=st.text(_ANY, max_size=60))
def test_parse_any_text(address: str) -> None:
    ANY_TEXT.check(address.encode("utf-8", "surrogatepass"), lambda: check(address, ""))


@pytest.mark.parametrize("data", corpus_params("addresses"))
def test_corpus(data: bytes) -> None:
    check(_decode(data), "")
