"""The SRS codec (Shevek's Sender Rewriting Scheme, as libsrs2 and postsrsd write it). No I/O.

Forward (we forward mail from ``local@domain`` and sign for our domain ``alias``)::

    local@domain                  -> SRS0=HHHH=TT=domain=local@alias
    SRS0=H=TT=d=l@relay           -> SRS1=HHHH=relay==H=TT=d=l@alias
    SRS1=H=relay==H=TT=d=l@other  -> SRS1=HHHH=relay==H=TT=d=l@alias   (kept short)

Reverse (a bounce comes back to ``alias``)::

    SRS0=HHHH=TT=domain=local@alias  -> local@domain      hash and timestamp checked
    SRS1=HHHH=relay==rest@alias      -> SRS0=rest@relay   hash checked (relay checks TT)

``HHHH`` is the first 4 characters of base64(HMAC-SHA1(secret, the fields in lower case)):
only the holder of a secret can make an address we take back, and a changed field (another
destination for the bounce) breaks it. ``TT`` is the day number modulo 1024 in two base32
characters; an SRS0 address older than ``max_age`` days is refused, so a leaked address
cannot be used as an open reflector for ever. The separator after ``SRS0``/``SRS1`` is
``=`` when we write it; ``+`` and ``-`` are read too (other implementations write them).
Several secrets may be given: the first signs, every one is accepted (rotation).
A hash is compared without case as well, as libsrs2 does: some MTAs lower-case local parts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from enum import StrEnum

TIME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
TIME_SLOTS = 1024          # 10 bits of days: about 2.8 years before a stamp repeats
HASH_LENGTH = 4
SEPARATORS = "=+-"


class SrsError(ValueError):
    """An SRS address we cannot take back; ``reason`` says why, for the 550 text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Kind(StrEnum):
    SRS0 = "SRS0"
    SRS1 = "SRS1"


def is_srs(local: str) -> bool:
    """Does the local part have the SRS0/SRS1 form (before any check)?"""
    return len(local) > 5 and local[:4].upper() in ("SRS0", "SRS1") and local[4] in SEPARATORS


def day_stamp(now: float) -> str:
    day = int(now // 86400) % TIME_SLOTS
    return TIME_CHARS[day >> 5] + TIME_CHARS[day & 31]


def stamp_age(stamp: str, now: float) -> int:
    """Days since ``stamp`` was written (modulo the 1024-day cycle); ValueError if bad."""
    s = stamp.upper()
    if len(s) != 2 or s[0] not in TIME_CHARS or s[1] not in TIME_CHARS:
        raise ValueError(stamp)
    then = TIME_CHARS.index(s[0]) << 5 | TIME_CHARS.index(s[1])
    today = int(now // 86400) % TIME_SLOTS
    return (today - then) % TIME_SLOTS


@dataclass(frozen=True, slots=True)
class Srs:
    secrets: tuple[bytes, ...]   # newest first: [0] signs, all verify
    max_age: int = 21            # days

    def __post_init__(self) -> None:
        if not self.secrets or not all(self.secrets):
            raise ValueError("SRS needs at least one non-empty secret")

    # -- hashing ------------------------------------------------------------------------

    @staticmethod
    def _mac(secret: bytes, fields: tuple[str, ...]) -> str:
        data = "".join(fields).lower().encode("utf-8", "surrogateescape")
        digest = hmac.new(secret, data, hashlib.sha1).digest()
        return base64.b64encode(digest).decode()[:HASH_LENGTH]

    def hash(self, *fields: str) -> str:
        return self._mac(self.secrets[0], fields)

    def _check(self, given: str, *fields: str) -> None:
        for secret in self.secrets:
            want = self._mac(secret, fields)
            if hmac.compare_digest(want, given) or hmac.compare_digest(want.lower(),
                                                                       given.lower()):
                return
        raise SrsError("the SRS hash does not match (forged or mangled address)")

    # -- forward ------------------------------------------------------------------------

    def forward(self, sender: str, alias: str, now: float | None = None) -> str:
        """The SRS address for envelope sender ``sender`` forwarded by ``alias``."""
        local, at, domain = sender.rpartition("@")
        if not at or not local or not domain:
            raise ValueError(f"not an address with a domain: {sender!r}")
        if is_srs(local):
            kind = local[:4].upper()
            if kind == Kind.SRS0:   # SRS0=rest@relay: wrap it, naming relay
                relay, user = domain, local[4:]
            else:                   # SRS1=H=relay==rest@x: keep the first relay
                _hash, _, rest = local[5:].partition("=")
                relay, sep, user = rest.partition("=")
                if not sep or not relay:
                    return self._srs0(local, domain, alias, now)
                user = "=" + user if user[:1] not in SEPARATORS else user
            return f"SRS1={self.hash(relay, user)}={relay}={user}@{alias}"
        return self._srs0(local, domain, alias, now)

    def _srs0(self, local: str, domain: str, alias: str, now: float | None) -> str:
        tt = day_stamp(time.time() if now is None else now)
        return f"SRS0={self.hash(tt, domain, local)}={tt}={domain}={local}@{alias}"

    # -- reverse ------------------------------------------------------------------------

    def reverse(self, local: str, now: float | None = None) -> str:
        """The address an SRS local part stands for; ``SrsError`` says why not."""
        if not is_srs(local):
            raise SrsError("not an SRS address")
        kind, body = local[:4].upper(), local[5:]
        if kind == Kind.SRS0:
            parts = body.split("=", 3)
            if len(parts) != 4 or not all(parts):
                raise SrsError("malformed SRS0 address")
            given, tt, domain, user = parts
            self._check(given, tt, domain, user)
            try:
                age = stamp_age(tt, time.time() if now is None else now)
            except ValueError:
                raise SrsError("malformed SRS0 timestamp") from None
            if age > self.max_age:
                raise SrsError(f"the SRS address expired ({age} days old, "
                               f"honoured for {self.max_age})")
            return f"{user}@{domain}"
        given, _, rest = body.partition("=")
        relay, sep, user = rest.partition("=")
        if not given or not relay or not sep or not user:
            raise SrsError("malformed SRS1 address")
        user = "=" + user if user[:1] not in SEPARATORS else user
        self._check(given, relay, user)
        return f"SRS0{user}@{relay}"
