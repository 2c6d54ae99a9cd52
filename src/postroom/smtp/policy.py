"""Who may do what on which listener: pure decisions, no I/O.

    mx            our own and hosted domains: only from inbound (upstream relays) or relay
                  (internal) networks; other domains: only from relay networks;
                  anyone else is refused at connect with 554 5.7.1.
    submission    AUTH (over TLS) required; authenticated users relay anywhere; the
    submissions   envelope sender must be one of the user's addresses unless the profile
                  allows any.

Whether an address is acceptable at all is the resolver's verdict, the same for every
client (internal networks included) and the same that ``postroom verify`` and local
submission get: a relay trick is ``553 5.7.1 Relaying denied: ...``, a malformed address
``553 5.1.3``. Only then does the client matter.

Every reply carries an enhanced status code (RFC 3463).
"""

from __future__ import annotations

import ipaddress
from enum import Enum
from functools import lru_cache
from typing import TYPE_CHECKING

from postroom.types import Route

if TYPE_CHECKING:
    from postroom.routing.resolve import Resolution


def quiescent_reply(hostname: str) -> str:
    """Quiescent mode's answer, at connect or to a command (RFC 5321 4.2.3: a 421 names
    the host)."""
    return f"421 4.3.2 {hostname} Service not available, closing transmission channel"


def shutdown_reply(hostname: str) -> str:
    """The answer while draining for a stop: to a new connection, and to an idle one."""
    return f"421 4.3.2 {hostname} Service shutting down, closing transmission channel"


class ClientClass(Enum):
    RELAY = "relay"        # internal network: may relay anywhere
    INBOUND = "inbound"    # trusted upstream relay: may deliver our domains
    OUTSIDE = "outside"


class Networks:
    def __init__(self, inbound: list[str], relay: list[str]) -> None:
        self.inbound = tuple(ipaddress.ip_network(n, strict=False) for n in inbound)
        self.relay = tuple(ipaddress.ip_network(n, strict=False) for n in relay)
        self.classify = lru_cache(maxsize=4096)(self._classify)

    def _classify(self, ip: str) -> ClientClass:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return ClientClass.OUTSIDE
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if any(addr in n for n in self.relay):
            return ClientClass.RELAY
        if any(addr in n for n in self.inbound):
            return ClientClass.INBOUND
        return ClientClass.OUTSIDE


def connect_reply(role: str, client: ClientClass, quiescent: bool, hostname: str) -> str | None:
    """A reply that refuses the connection at greeting, or None to greet normally."""
    if quiescent:
        return quiescent_reply(hostname)
    if role == "mx" and client is ClientClass.OUTSIDE:
        return f"554 5.7.1 {hostname} Access denied: this host takes mail only from its relays"
    return None


def rcpt_reply(address: str, resolution: Resolution, *, client: ClientClass,
               authenticated: bool) -> str | None:
    """Refusal for one RCPT, or None to accept. The address itself first (relay tricks,
    syntax: the same answer for every client), then relaying, then its routes."""
    if resolution.refused is not None:
        return refusal_reply(address, resolution.refused)
    if not resolution.local and not (authenticated or client is ClientClass.RELAY):
        return f"550 5.7.1 <{address}>: Relaying denied"
    refusal = resolution.refusal
    return refusal_reply(address, refusal) if refusal is not None else None


def refusal_reply(address: str, route: Route) -> str:
    """The SMTP reply for an error route."""
    if route.status == "5.1.1":
        return f"550 5.1.1 <{address}>: No such user"
    return f"{route.code} {route.status} <{address}>: {route.text}"


def sender_reply(sender: str, login: str, allowed: list[str], *, must_match: bool) -> str | None:
    """Submission: the envelope sender must be one of the user's own addresses."""
    if not must_match:
        return None
    wanted = sender.lower()
    if wanted and wanted in (a.lower() for a in allowed):
        return None
    return f"553 5.7.1 <{sender}>: Sender address not owned by user {login}"
