"""dkimpy's ``rfc822_parse`` with the body left in one piece: the third adapter of dkimpy
(after ``rsa_openssl`` and ``body_memo``).

dkimpy splits the whole message into lines with a regular expression (``\\r?\\n``, for
messages with bare LFs) and joins the body's lines again with CRLF: a fifth of an
ed25519 signature's cost, for a body it then hands on unchanged. A message in the queue
has CRLF line ends only; for one like that (and with a header block ended by an empty
line) only the header block is split, on CRLF, which gives the same lines, and the body is
the rest of the message, which is what the join gives. The header lines go through
dkimpy's own loop (``ORIGINAL`` on the header block), so its errors and its handling of
continuation lines and a leading ``From `` line are kept. Any other message goes to
dkimpy's function whole. ``install()`` is idempotent and refuses when dkimpy no longer
has the function we know; ``tests/deliverability/test_signing_units.py`` checks the
bytes against dkimpy's on generated messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dkim

ORIGINAL: Callable[[bytes], tuple[list[list[bytes]], bytes]] = dkim.rfc822_parse
_BLANK = b"\r\n\r\n"


def rfc822_parse(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """``dkim.rfc822_parse(message)``, splitting only the header block when it can."""
    end = message.find(_BLANK)
    if (end <= 0 or message.startswith(b"\r\n")
            or message.count(b"\n") != message.count(b"\r\n")):
        return ORIGINAL(message)
    # dkimpy's loop over the header lines; "\r\n\r\n" ends them, as its empty line does
    headers, rest = ORIGINAL(message[:end] + _BLANK)
    if rest:  # cannot be (no empty line before ``end``), but dkimpy's answer is the rule
        return ORIGINAL(message)
    return headers, message[end + len(_BLANK):]


def install() -> None:
    current: Any = dkim.rfc822_parse
    if current is rfc822_parse:
        return
    if current is not ORIGINAL:
        raise RuntimeError("dkimpy changed: rfc822_parse is not the one we know; review "
                           "postroom.signing.crlf_parse")
    dkim.rfc822_parse = rfc822_parse
