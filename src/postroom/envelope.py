"""The envelope of a queued message: who sent it, to whom, how it arrived, and the state of
every final route of every recipient.

One RCPT may expand into several routes (an alias with several targets); each route is a
``Delivery`` with its own state, tries and schedule, so a partly delivered message is
retried only where it failed. Serialised as JSON, so a spool can be read with ``cat``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from postroom.types import FINAL_STATES, RcptState, Route

__all__ = ["Delivery", "Envelope", "RcptState", "Recipient"]  # RcptState: the state of a Delivery


@dataclass(slots=True)
class Delivery:
    """One final route of one recipient and where its delivery stands."""

    mailer: str
    host: str
    user: str
    address: str
    state: RcptState = RcptState.PENDING
    tries: int = 0
    next_attempt: float = 0.0
    last_attempt: float = 0.0
    last_error: str = ""      # last reply or failure text, e.g. "451 4.4.1 Connection refused"
    status: str = ""          # enhanced status code of the last attempt, e.g. 4.4.1 / 2.0.0
    remote_mta: str = ""      # host that gave the last reply
    dsn_sent: bool = False    # the final DSN for this delivery has been queued

    @classmethod
    def from_route(cls, route: Route) -> Delivery:
        return cls(route.mailer, route.host, route.user, route.address)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(slots=True)
class Recipient:
    """One RCPT TO, with its DSN parameters and the deliveries it resolved to."""

    address: str
    deliveries: list[Delivery] = field(default_factory=list)
    orcpt: str | None = None          # RFC 3461 ORCPT, e.g. "rfc822;user@example.org"
    notify: list[str] | None = None   # NEVER | SUCCESS, FAILURE, DELAY; None = default

    @property
    def final(self) -> bool:
        return all(d.final for d in self.deliveries)


@dataclass(slots=True)
class Envelope:
    sender: str                       # "" is the null sender (bounces)
    recipients: list[Recipient]
    arrival: float
    id: str = ""
    size: int = 0
    ret: str | None = None            # RFC 3461 RET: FULL | HDRS
    envid: str | None = None          # RFC 3461 ENVID
    body: str | None = None           # 7BIT | 8BITMIME
    smtputf8: bool = False
    client_addr: str = ""
    client_name: str = ""
    helo: str = ""
    protocol: str = "ESMTP"           # ESMTP, ESMTPS, ESMTPSA, local
    auth_user: str = ""
    tls: str = ""                     # e.g. TLSv1.3
    listener: str = ""
    held: bool = False
    delay_warned: bool = False
    kind: str = ""                    # "" | "dsn" (a notice we made) | "double-bounce"
    returned: str = ""                # why the postmaster returned it (postroom queue bounce)
    salvaged_from: str = ""           # its queue ID on the machine it was imported from
    list_post: str = ""               # a list post (kind "list-post"): the list's address

    @property
    def deliveries(self) -> list[Delivery]:
        return [d for r in self.recipients for d in r.deliveries]

    @property
    def done(self) -> bool:
        return all(r.final for r in self.recipients)

    def return_to_sender(self, reason: str, status: str = "5.0.0") -> int:
        """Fail every delivery not yet final, so that the runner sends the bounce (as the
        lifetime's end does); returns how many it failed. Remembered in ``returned``, so
        that a runner that was delivering the message meanwhile does not undo it."""
        pending = [d for d in self.deliveries if not d.final]
        if pending:
            self.returned = reason
        for d in pending:
            d.state, d.status, d.last_error, d.next_attempt = RcptState.FAILED, status, reason, 0.0
        return len(pending)

    def to_json(self) -> bytes:
        # the same dict as dataclasses.asdict, built without its deep copy (once per put)
        raw: dict[str, Any] = {name: getattr(self, name) for name in _ENVELOPE_FIELDS}
        raw["recipients"] = [
            {"address": r.address,
             "deliveries": [{name: getattr(d, name) for name in _DELIVERY_FIELDS}
                            for d in r.deliveries],
             "orcpt": r.orcpt, "notify": None if r.notify is None else list(r.notify)}
            for r in self.recipients]
        # an 8-bit address or reply arrives as surrogate escapes: stored as its own bytes
        return json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogateescape")

    @classmethod
    def from_json(cls, data: bytes | str) -> Envelope:
        if isinstance(data, bytes):
            data = data.decode("utf-8", "surrogateescape")
        raw: dict[str, Any] = json.loads(data)
        recipients = [
            Recipient(
                address=r["address"],
                orcpt=r.get("orcpt"),
                notify=r.get("notify"),
                deliveries=[Delivery(**{**d, "state": RcptState(d["state"])})
                            for d in r["deliveries"]],
            )
            for r in raw.pop("recipients")
        ]
        return cls(recipients=recipients, **raw)


_ENVELOPE_FIELDS = tuple(f.name for f in fields(Envelope))
_DELIVERY_FIELDS = tuple(f.name for f in fields(Delivery))
assert tuple(f.name for f in fields(Recipient)) == ("address", "deliveries", "orcpt", "notify")
