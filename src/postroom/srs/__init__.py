"""Sender Rewriting Scheme: forwarded mail leaves with a sender in our domain, and the
bounces to it find their way back.

    codec     the SRS0/SRS1 address format, HMAC and day stamps (no I/O)
    secrets   SITE/keys/srs.secret: read, made when missing, rotated
    policy    the site's rules: which deliveries are rewritten, what a bounce means
"""

from postroom.srs.codec import Srs, SrsError, is_srs
from postroom.srs.policy import SrsPolicy

__all__ = ["Srs", "SrsError", "SrsPolicy", "is_srs"]
