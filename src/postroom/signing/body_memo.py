"""dkimpy's relaxed body canonicalisation, kept for the last body and skipped for a body
that is canonical already: the second adapter of dkimpy (the first is ``rsa_openssl``).

dkimpy canonicalises the whole body for every signature (two regular-expression passes
over it, a third of the cost of an ed25519 signature). The copies of a list post share
one body and each is signed, and a message is sealed (ARC) and then signed over the same
body; so the last body's canonical form is kept, one per thread, for bodies up to
``MAX_BODY`` (a larger one is canonicalised each time, as dkimpy does, rather than held).
Most bodies have no tab, no two spaces in a row and no space before a line end: the two
passes (trailing white space stripped, runs of it made one space) leave such a body as
it is, so only dkimpy's handling of the trailing empty lines is run on it. The bytes are
dkimpy's own: its functions compute them.
``install()`` is idempotent and refuses when dkimpy no longer has the function we know;
``tests/deliverability/test_signing_units.py`` fails when dkimpy changes under us.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dkim import canonicalization
from dkim.canonicalization import correct_empty_body, strip_trailing_lines

MAX_BODY = 4 * 1024 * 1024
ORIGINAL: Callable[[bytes], bytes] = canonicalization.Relaxed.canonicalize_body
_last = threading.local()


def canonicalize_body(body: bytes) -> bytes:
    """``Relaxed.canonicalize_body(body)``, from memory when it is the last body again."""
    hit: tuple[bytes, bytes] | None = getattr(_last, "body", None)
    if hit is not None and hit[0] == body:
        return hit[1]
    if b"\t" not in body and b"  " not in body and b" \r\n" not in body:
        out: bytes = correct_empty_body(strip_trailing_lines(body))  # the passes keep it
    else:
        out = ORIGINAL(body)
    if len(body) <= MAX_BODY:
        _last.body = (body, out)
    return out


def install() -> None:
    current = canonicalization.Relaxed.canonicalize_body
    if current is canonicalize_body:
        return
    if current is not ORIGINAL:
        raise RuntimeError("dkimpy changed: Relaxed.canonicalize_body is not the one we "
                           "know; review postroom.signing.body_memo")
    canonicalization.Relaxed.canonicalize_body = staticmethod(canonicalize_body)
