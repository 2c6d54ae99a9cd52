"""DKIM signatures (RFC 6376, RFC 8463) with dkimpy: relaxed/relaxed, the RFC's header set
plus ``List-Unsubscribe-Post`` (RFC 8058 wants it signed), ``From`` over-signed so nobody
can add a second one. The signature is the last thing done to a message: a header added
after it would not be covered, a header changed would break it."""

from __future__ import annotations

import logging
from email.utils import getaddresses

import dkim

from postroom.signing.keys import Key, KeyRing

log = logging.getLogger("postroom.signing")
_EXTRA = (b"list-unsubscribe-post",)
DKIMPY_LOG = logging.getLogger("postroom.signing.dkimpy")  # dkimpy's own debug chatter
DKIMPY_LOG.setLevel(logging.WARNING)


def header_value(message: bytes, name: bytes) -> bytes | None:
    """The first ``name:`` header's unfolded value, without parsing the message."""
    end = message.find(b"\r\n\r\n")
    head = message[:end if end >= 0 else len(message)]
    want = name.lower() + b":"
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines):
        if line[:len(want)].lower() == want:
            value = [line[len(want):]]
            for more in lines[i + 1:]:
                if more[:1] not in (b" ", b"\t"):
                    break
                value.append(more)
            return b" ".join(v.strip() for v in value)
    return None


def from_domain(message: bytes) -> str:
    """The domain of the (first) From address, lower case; "" when there is none."""
    raw = header_value(message, b"From")
    if raw is None:
        return ""
    pairs = getaddresses([raw.decode("utf-8", "replace")])
    addr = pairs[0][1] if pairs else ""
    return addr.rpartition("@")[2].strip().lower().rstrip(">")


def sign(message: bytes, key: Key) -> bytes:
    """``message`` with a DKIM-Signature of ``key`` on top."""
    d = dkim.DKIM(message, signature_algorithm=key.signature_algorithm, logger=DKIMPY_LOG)
    include = d.default_sign_headers()
    include += [name for name, _ in d.headers if name.lower() in _EXTRA]
    header = d.sign(key.selector.encode(), key.domain.encode(), key.private,
                    canonicalize=(b"relaxed", b"relaxed"), include_headers=include)
    return bytes(header) + message


class Signer:
    """Signs for the domains the site holds keys for."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def key_for(self, message: bytes, fallback: str = "") -> Key | None:
        """The From domain's key (or a parent's), else ``fallback``'s (a list's domain)."""
        key = self.ring.for_domain(from_domain(message)) if self.ring else None
        if key is None and fallback:
            key = self.ring.for_domain(fallback)
        return key

    def sign(self, message: bytes, fallback: str = "") -> bytes:
        key = self.key_for(message, fallback)
        if key is None:
            return message
        try:
            return sign(message, key)
        except dkim.DKIMException as e:  # a message dkimpy cannot read goes out unsigned
            log.warning("not DKIM-signed (%s, %s): %s", key.domain, key.selector, e)
            return message
