"""Tokens derived from a list's secret (HMAC-SHA256), and VERP addresses. No I/O, no state.

One-click unsubscribe (RFC 8058), per member, in the ``List-Unsubscribe`` URL::

    token = b64url(HMAC(secret, "unsubscribe" 0 list_id 0 address)[:16])

22 characters; the web endpoint recomputes it (``check_unsubscribe_token``, constant time).
Nothing is stored: changing the list's secret revokes every link at once.

Confirmation (subscribe, unsubscribe on someone's behalf, ...), in ``LIST-confirm+TOKEN@``::

    token = b32lower(issued_at (5 bytes) || HMAC(secret, "confirm" 0 kind 0 address 0 t)[:15])

32 characters of ``[a-z2-7]``: safe in a local part (64-octet limit) whatever an MTA does to
case. The token carries its issue time, so its age cannot be extended without the secret;
the kind and the address come from the request it confirms (the store's pending record),
so a token for one address or kind does not confirm another.

Approval (``Approved:`` header): ``approval_token(secret, list_id)``, what a moderator puts
in the header to post past the rules (the list has no separate moderator password).

VERP (Mailman's ``$bounces+$local=$domain``, Postfix's ``+=`` delimiters): the member
``user@example.org`` of ``staff@lists.example.ac.uk`` gets the envelope sender
``staff-bounces+user=example.org@lists.example.ac.uk``. A domain never holds ``=``, so the
last ``=`` of the extension is the ``@``; a local part with ``=`` or ``+`` survives the
round trip.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

_SHA256 = hashlib.sha256


def _mac(secret: bytes, *parts: str) -> bytes:
    return hmac.digest(secret, "\0".join(parts).encode(), _SHA256)


# -- one-click unsubscribe --------------------------------------------------------------------

def unsubscribe_token(secret: bytes, list_id: str, address: str) -> str:
    """The member's one-click unsubscribe token for the list ``list_id``."""
    mac = _mac(secret, "unsubscribe", list_id.lower(), address.lower())
    return base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode()


def check_unsubscribe_token(secret: bytes, list_id: str, address: str, token: str) -> bool:
    """True when ``token`` is the member's token (compared in constant time)."""
    expected = unsubscribe_token(secret, list_id, address)
    return hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace"))


# -- confirmation ----------------------------------------------------------------------------

_TIME_BYTES = 5          # seconds since the epoch: enough until the year 36812
_CONFIRM_MAC = 15        # 5 + 15 = 20 bytes = 32 base32 characters, no padding


def _epoch(when: datetime | int) -> int:
    return when if isinstance(when, int) else int(when.timestamp())


def confirm_token(secret: bytes, kind: str, address: str, issued_at: datetime | int) -> str:
    """A token confirming ``kind`` (e.g. ``"subscribe"``) for ``address``, issued then."""
    epoch = _epoch(issued_at)
    mac = _mac(secret, "confirm", kind, address.lower(), str(epoch))[:_CONFIRM_MAC]
    return base64.b32encode(epoch.to_bytes(_TIME_BYTES, "big") + mac).decode().lower()


def token_issued_at(token: str) -> int | None:
    """The issue time (epoch seconds) a confirmation token claims, or None if malformed."""
    try:
        raw = base64.b32decode(token.upper())
    except ValueError:
        return None
    if len(raw) != _TIME_BYTES + _CONFIRM_MAC:
        return None
    return int.from_bytes(raw[:_TIME_BYTES], "big")


def verify_confirm_token(secret: bytes, token: str, kind: str, address: str, *,
                         now: datetime | int, max_age: float) -> bool:
    """True when ``token`` confirms ``kind`` for ``address`` and is at most ``max_age``
    seconds old at ``now``; False when it is forged, for something else, or expired (or
    claims to come from the future)."""
    issued = token_issued_at(token)
    if issued is None:
        return False
    age = _epoch(now) - issued
    if age < 0 or age > max_age:
        return False
    expected = confirm_token(secret, kind, address, issued)
    return hmac.compare_digest(expected, token.lower())


# -- approval ----------------------------------------------------------------------------------

def approval_token(secret: bytes, list_id: str) -> str:
    """The ``Approved:`` value that passes a post by the rules of ``list_id``."""
    mac = _mac(secret, "approve", list_id.lower())[:15]
    return base64.b32encode(mac).decode().lower()


def check_approval_token(secret: bytes, list_id: str, value: str) -> bool:
    if not secret:
        return False
    expected = approval_token(secret, list_id)
    return hmac.compare_digest(expected.encode(), value.strip().lower().encode("utf-8",
                                                                             "replace"))


# -- VERP ----------------------------------------------------------------------------------------

def verp_sender(list_name: str, list_domain: str, member: str) -> str:
    """``NAME-bounces+user=domain@listdomain`` for the member ``user@domain``."""
    local, at, domain = member.rpartition("@")
    if not at:
        raise ValueError(f"VERP needs a member address with a domain, not {member!r}")
    return f"{list_name}-bounces+{local}={domain}@{list_domain}"


def verp_member(address: str, list_name: str, list_domain: str) -> str | None:
    """The member a VERP bounce address of this list names, or None when ``address`` is
    not one (another list, the plain ``-bounces`` address, a mangled extension)."""
    local, at, domain = address.rpartition("@")
    if not at or domain.lower() != list_domain.lower():
        return None
    prefix = f"{list_name}-bounces+"
    if not local.lower().startswith(prefix.lower()):
        return None
    extension = local[len(prefix):]
    user, eq, member_domain = extension.rpartition("=")
    if not eq or not user or not member_domain:
        return None
    return f"{user}@{member_domain.lower()}"
