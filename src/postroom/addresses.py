"""Parsing and normalising envelope addresses (RFC 5321 / RFC 6531). No I/O.

An address is split into its local part and domain. Domains are always compared in lower
case (IDNA domains are kept as U-labels). A quoted local part is read as RFC 5321 says
(``"rt"@us`` is ``rt@us``) and kept quoted only when it must be (``"a b"@far``).

The forms old mailers turned into relaying are refused here, with ``RelayTrick``, so no
later stage can be tricked into routing them: a source route (``@a,@b:user@c``), a ``%``
(``user%host@us``, ``user@host%us``), a ``!`` path (``host!user@us``, ``host!user``) and a
quoted local part hiding an ``@`` (``"user@host"@us``, ``"user@host"``). A malformed address
(two ``@``, a trailing dot, a bad domain or address literal) is an ``AddressError``.
``docs/configuration.md`` ("Addresses that are never routed") has the table.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from postroom.errors import AddressError

_FORBIDDEN = frozenset("\r\n\0<>")
# An address with none of these, one @ at most, no leading @ and no trailing dot takes the
# fast path: nothing in it can be a relay trick or need unquoting.
_SLOW = frozenset('"%![]\\ ')
# RFC 5321 Dot-string (atext, RFC 6531 adds UTF-8): a local part that needs no quotes
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
                       r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+)*\Z")
# A domain: dot-separated labels of letters, digits, hyphens (and U-labels)
_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_STRAY = frozenset('"[]\\')  # in an unquoted local part


class RelayTrick(AddressError):
    """An address asking this host to route it on itself: ``trick`` names the form."""

    def __init__(self, address: str, trick: str) -> None:
        self.trick = trick
        super().__init__(address, f"{trick} not accepted")


@dataclass(frozen=True, slots=True)
class Address:
    local: str   # as sent on: unquoted when it is a dot-atom, else quoted ("a b")
    domain: str  # lower case; "" when the address had none

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def bare(self) -> str:
        """The local part without its quotes: the name the maps are looked up by."""
        return unquote_local(self.local)


def split(address: str) -> tuple[str, str]:
    """Split at the last ``@`` without checking; the domain is lower-cased."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.lower()


def unquote_local(local: str) -> str:
    """Remove RFC 5321 quoting (``"a b"`` -> ``a b``, ``"a\\"b"`` -> ``a"b``)."""
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        inner = local[1:-1]
        if "\\" not in inner:
            return inner
        out = []
        escaped = False
        for ch in inner:
            if escaped:
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                out.append(ch)
        return "".join(out)
    return local


def quote_local(bare: str) -> str:
    """The local part as written in an address: quoted only when it is not a dot-atom."""
    if _DOT_ATOM.match(bare):
        return bare
    return '"' + bare.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _closing_quote(text: str) -> int:
    """Index of the quote that closes the quoted string opening ``text``, or -1."""
    escaped = False
    for i in range(1, len(text)):
        ch = text[i]
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return i
    return -1


def relay_trick(address: str) -> str | None:
    """Name the relay trick in ``address``, or None when it is none (it may still be
    malformed: ``parse`` says so)."""
    try:
        parse(address)
    except RelayTrick as e:
        return e.trick
    except AddressError:
        return None
    return None


def strip_route(path: str) -> str:
    """``@a,@b:user@c`` -> ``user@c``: RFC 5321 (4.1.1.3, appendix C) lets a server ignore
    the source route of a reverse-path; other paths are returned as they are."""
    if path.startswith("@"):
        _route, colon, rest = path.partition(":")
        if colon and rest:
            return rest
    return path


def parse(address: str, *, default_domain: str = "") -> Address:
    """Parse an envelope address; raise RelayTrick for relay tricks and AddressError for
    anything else that is no address."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not text:
        raise AddressError("", "empty address")
    if not _FORBIDDEN.isdisjoint(text):
        raise AddressError(repr(address), "control characters or angle brackets in address")
    if len(text) > 512:
        raise AddressError(address[:40] + "...", "address longer than 512 characters")
    if _SLOW.isdisjoint(text) and text[0] != "@" and text[-1] != ".":
        local, at, domain = text.partition("@")
        if not at:
            return Address(text, default_domain.lower())
        if "@" not in domain and local and domain:
            domain = domain.lower()
            if _domain_ok(domain):
                return Address(local, domain)
    return _parse_slow(text, default_domain)


def _parse_slow(text: str, default_domain: str) -> Address:
    if text[0] == "@":
        if ":" in text:
            raise RelayTrick(text, "source route")
        raise AddressError(text, "missing local part")
    if text[0] == '"':
        end = _closing_quote(text)
        if end < 0:
            raise AddressError(text, "unbalanced double quote in local part")
        quoted, rest = text[: end + 1], text[end + 1 :]
        if rest and rest[0] != "@":
            raise AddressError(text, "text after the quoted local part")
        bare = unquote_local(quoted)
        if "@" in bare:
            raise RelayTrick(text, "quoted @ in local part")
        if not bare:
            raise AddressError(text, "empty local part")
        local = quote_local(bare)
        at, domain = rest[:1], rest[1:]
    else:
        local, at, domain = text.partition("@")
        if "@" in domain:
            raise AddressError(text, "more than one @ in address")
        if not _STRAY.isdisjoint(local):
            raise AddressError(text, "stray quote, bracket or backslash in local part")
        if " " in local:
            raise AddressError(text, "unquoted space in local part")
        bare = local
    if "%" in bare:
        raise RelayTrick(text, "% hack")
    if "!" in bare:
        raise RelayTrick(text, "! path")
    if not at:
        return Address(local, default_domain.lower())
    if not local or not domain:
        raise AddressError(text, "missing local part or domain")
    domain = domain.lower()
    if domain[0] == "[":
        _check_literal(text, domain)
        return Address(local, domain)
    if "%" in domain:
        raise RelayTrick(text, "% hack")
    if "!" in domain:
        raise RelayTrick(text, "! path")
    if domain.endswith("."):
        raise AddressError(text, "trailing dot in domain")
    if not _domain_ok(domain):
        raise AddressError(text, "invalid domain")
    return Address(local, domain)


@lru_cache(maxsize=4096)
def _domain_ok(domain: str) -> bool:
    return len(domain) <= 255 and _DOMAIN.match(domain) is not None


def _check_literal(text: str, domain: str) -> None:
    """An address literal must be ``[IPv4]`` or ``[IPv6:...]`` naming a host address."""
    ip = literal_ip(domain)
    if ip is None:
        raise AddressError(text, "malformed address literal")
    if ip.is_unspecified or ip.is_multicast or (
            isinstance(ip, ipaddress.IPv4Address) and ip.is_reserved):
        raise AddressError(text, "address literal names no host")


def literal_ip(domain: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of an address literal (``[192.0.2.1]``, ``[ipv6:2001:db8::1]``),
    or None when ``domain`` is not a well-formed one."""
    if len(domain) < 3 or domain[0] != "[" or domain[-1] != "]":
        return None
    inner = domain[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return ipaddress.IPv6Address(inner[5:])
        if ":" in inner:
            return None  # RFC 5321: IPv6 needs its tag; other tags we do not know
        return ipaddress.IPv4Address(inner)
    except ValueError:
        return None


def is_address_literal(domain: str) -> bool:
    return domain.startswith("[") and domain.endswith("]")
