"""Parsing and normalising envelope addresses (RFC 5321 / RFC 6531). No I/O.

An address is split into its local part and domain. Domains are always compared in lower
case (IDNA domains are kept as U-labels). The forms that old mailers turned into relaying,
``user%host@us``, ``host!user@us``, ``@a,@b:user@c`` source routes and a quoted local part
hiding an ``@``, are refused here, so no later stage can be tricked into relaying them.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.errors import AddressError

# Characters that make a local part a relay trick when unquoted-looking.
_TRICK_CHARS = frozenset("%!@")
_FORBIDDEN = frozenset("\r\n\0<>")
_PLAIN = frozenset('"%![')  # an address with none of these (and one @ at most) is no trick


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str  # lower case; "" when the address had none

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local


def split(address: str) -> tuple[str, str]:
    """Split at the last ``@`` without checking; the domain is lower-cased."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.lower()


def unquote_local(local: str) -> str:
    """Remove RFC 5321 quoting (``"a b"`` -> ``a b``)."""
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        inner = local[1:-1]
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


def relay_trick(address: str) -> str | None:
    """Name the relay trick in ``address``, or None when it is a plain address."""
    if address.startswith("@"):
        return "source route"
    local, domain = split(address)
    bare = unquote_local(local)
    if bare != local and "@" in bare:
        return "quoted @ in local part"
    for ch in ("%", "!", "@"):
        if ch in bare:
            return {"%": "% hack", "!": "! path", "@": "@ in local part"}[ch]
    if domain.startswith("[") and not domain.endswith("]"):
        return "malformed address literal"
    return None


def parse(address: str, *, default_domain: str = "") -> Address:
    """Parse an envelope address; raise AddressError for garbage and relay tricks."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not text:
        raise AddressError("", "empty address")
    if not _FORBIDDEN.isdisjoint(text):
        raise AddressError(repr(address), "control characters or angle brackets in address")
    if len(text) > 512:
        raise AddressError(address[:40] + "...", "address longer than 512 characters")
    if not _PLAIN.isdisjoint(text) or text.count("@") > 1 or text[0] == "@":  # maybe a trick
        trick = relay_trick(text)
        if trick:
            raise AddressError(text, f"{trick} not accepted")
    local, at, domain = text.rpartition("@")
    if at:
        if not local or not domain:
            raise AddressError(text, "missing local part or domain")
        domain = domain.lower()
    else:
        local, domain = text, default_domain.lower()
    if " " in local and not local.startswith('"'):
        raise AddressError(text, "unquoted space in local part")
    return Address(local, domain)


def is_address_literal(domain: str) -> bool:
    return domain.startswith("[") and domain.endswith("]")
