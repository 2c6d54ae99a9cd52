"""ARC sets (RFC 8617) with dkimpy: ARC-Authentication-Results (a copy of our
Authentication-Results, instance i), ARC-Message-Signature (the message as we send it),
ARC-Seal (the chain so far). Sealed after every change we make, DKIM signature included,
so a receiver that trusts our seal can trust what we found when the mail arrived."""

from __future__ import annotations

import logging

import dkim

from postroom.signing.dkimsign import DKIMPY_LOG
from postroom.signing.keys import Key

log = logging.getLogger("postroom.signing")


def seal(message: bytes, key: Key, authserv_id: str) -> bytes:
    """``message`` with the next ARC set on top; unchanged when it holds no
    Authentication-Results of ours (nothing to vouch for) or dkimpy refuses."""
    try:
        arc_set = dkim.arc_sign(message, key.selector.encode(), key.domain.encode(),
                                key.private, authserv_id.encode(), logger=DKIMPY_LOG)
    except dkim.DKIMException as e:
        log.warning("not ARC-sealed (%s, %s): %s", key.domain, key.selector, e)
        return message
    return b"".join(bytes(h) for h in arc_set) + message
