"""The shared vocabulary: where a recipient goes (``Route``, ``Mailer``), where its delivery
stands (``RcptState``), and the courier contract (``Job`` in, one ``Attempt`` per delivery
out). Every layer speaks these words; this module imports nothing above the ground floor.

The courier contract. A ``Job`` is one message for one destination: every ``Delivery`` in
it has the same mailer and host (one MX domain, one relay host, the local mailboxes, ...),
in queue order. A courier answers with exactly one ``Attempt`` per delivery::

    Outcome.SENT       handed over; final (2xx)
    Outcome.DEFERRED   temporary failure: connection trouble, 4xx, a full disk, an unknown
                       error; the queue tries again later
    Outcome.FAILED     permanent failure (5xx); the queue owes a bounce

A courier never raises for a delivery problem. An exception nobody expected is a
*temporary* failure (maddy's ``IsTemporaryOrUnspec``): mail is retried, never bounced
because of a bug; the runner enforces that around every courier (``runner.contract``).
The courier does not touch the queue; ``Attempt.apply`` records an attempt on its
``Delivery`` and the runner stores it and schedules the next try.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple, Protocol

from postroom.errors import DeliveryError

if TYPE_CHECKING:  # the envelope model is built on these words, not the other way round
    from postroom.envelope import Delivery, Envelope, Recipient

# (envelope sender, message) for one delivery of a message rendered per recipient
Render = Callable[["Delivery"], tuple[str, bytes]]


class Mailer(StrEnum):
    """The ways a final recipient can be reached (sendmail's mailer names)."""

    LOCAL = "local"      # Maildir under SITE/mail/USER
    ESMTP = "esmtp"      # another domain, by MX or a bracketed host
    RELAY = "relay"      # a named relay host (smart host, null client hub)
    PROG = "prog"        # a pipe into a command
    FILE = "file"        # appended to an mbox file
    LIST = "list"        # the list engine
    ERROR = "error"      # refused: the route carries the reply


MAILERS = tuple(m.value for m in Mailer)


class Route(NamedTuple):
    """Where one final recipient goes. ``address`` is the name sendmail would print."""

    mailer: str
    host: str
    user: str
    address: str
    code: int = 0  # error routes: the SMTP reply
    status: str = ""
    text: str = ""

    @property
    def deliverable(self) -> bool:
        return self.mailer != Mailer.ERROR

    def sendmail_line(self) -> str:
        """The ``sendmail -bv`` form of this route."""
        if self.mailer == Mailer.ERROR:
            return f"{self.address}... {self.text}"
        host = f", host {self.host}" if self.host else ""
        return f"{self.address}... deliverable: mailer {self.mailer}{host}, user {self.user}"


class RcptState(StrEnum):
    PENDING = "pending"    # not tried yet
    DEFERRED = "deferred"  # tried, temporary failure, will retry at next_attempt
    SENT = "sent"          # handed over (final)
    FAILED = "failed"      # permanent failure or lifetime over (final); bounce owed/sent


FINAL_STATES = frozenset({RcptState.SENT, RcptState.FAILED})


class Outcome(StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"


_STATE = {Outcome.SENT: RcptState.SENT, Outcome.DEFERRED: RcptState.DEFERRED,
          Outcome.FAILED: RcptState.FAILED}


@dataclass(slots=True)
class Attempt:
    """The result of one try of one delivery.

    ``code`` and ``status`` always agree with ``outcome`` (2xx/2.x.x, 4xx/4.x.x, 5xx/5.x.x);
    ``text`` is the reply text without them (a remote server's words, or ours), so
    ``reply`` reads ``250 2.0.0 Ok: queued as X``. ``remote`` is ``mx.host [192.0.2.1]``
    for SMTP and empty for local couriers; ``tls`` is the protocol used (``TLSv1.3``) or
    empty.
    """

    delivery: Delivery
    outcome: Outcome
    code: int
    status: str
    text: str
    remote: str = ""
    tls: str = ""

    @property
    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}".rstrip()

    def apply(self) -> None:
        """Record this attempt on its delivery. Scheduling (``next_attempt``) is the runner's."""
        d = self.delivery
        d.state = _STATE[self.outcome]
        d.tries += 1
        d.last_error = self.reply
        d.status = self.status
        d.remote_mta = self.remote


def sent(delivery: Delivery, text: str, *, code: int = 250, status: str = "2.0.0",
         remote: str = "", tls: str = "") -> Attempt:
    return Attempt(delivery, Outcome.SENT, code, status, text, remote, tls)


def deferred(delivery: Delivery, text: str, *, code: int = 451, status: str = "4.3.0",
             remote: str = "", tls: str = "") -> Attempt:
    return Attempt(delivery, Outcome.DEFERRED, code, status, text, remote, tls)


def failed(delivery: Delivery, text: str, *, code: int = 550, status: str = "5.0.0",
           remote: str = "", tls: str = "") -> Attempt:
    return Attempt(delivery, Outcome.FAILED, code, status, text, remote, tls)


def from_error(delivery: Delivery, error: DeliveryError, *, tls: str = "") -> Attempt:
    """A ``TemporaryFailure`` / ``PermanentFailure`` as the attempt it stands for."""
    outcome = Outcome.FAILED if error.permanent else Outcome.DEFERRED
    return Attempt(delivery, outcome, error.code, error.enhanced, error.text,
                   error.remote or "", tls)


@dataclass(slots=True)
class Job:
    """One message for one destination: deliveries share mailer and host, in queue order."""

    envelope: Envelope
    message: bytes          # the queued message, CRLF line endings, our Received on top
    deliveries: list[Delivery]
    queue_id: str
    # a message rendered per recipient at delivery time (a list post: VERP sender and
    # the member's own headers); None: every recipient gets ``message`` from the sender
    render: Render | None = None
    # the envelope sender of these deliveries when it is not the envelope's (SRS, chosen
    # per delivery by ``runner.outbound``); the stored envelope is never changed for it
    sender: str | None = None
    # told of each delivery the remote server accepted, as soon as it did (the runner
    # journals it: ``postroom.queue.journal``); None: nobody listens
    progress: Callable[[Delivery, str], None] | None = None
    _owners: dict[int, Recipient] | None = field(default=None, init=False, repr=False,
                                                 compare=False)

    def personal(self, delivery: Delivery) -> tuple[str, bytes]:
        """(envelope sender, message) as this delivery's recipient gets them."""
        if self.render is None:
            return self.return_path, self.message
        return self.render(delivery)

    @property
    def return_path(self) -> str:
        """The envelope sender (MAIL FROM) these deliveries go out with."""
        return self.envelope.sender if self.sender is None else self.sender

    @property
    def mailer(self) -> str:
        return self.deliveries[0].mailer if self.deliveries else ""

    @property
    def host(self) -> str:
        return self.deliveries[0].host if self.deliveries else ""

    def recipient(self, delivery: Delivery) -> Recipient | None:
        """The RCPT TO this delivery came from (before alias expansion), with its DSN
        parameters; None for a delivery the envelope does not hold."""
        if self._owners is None:
            self._owners = {id(d): r for r in self.envelope.recipients for d in r.deliveries}
        return self._owners.get(id(delivery))

    def original_recipient(self, delivery: Delivery) -> str:
        r = self.recipient(delivery)
        return r.address if r is not None else delivery.address


class Courier(Protocol):
    """Delivers one Job; one Attempt per Delivery, in order; never raises for mail trouble."""

    async def deliver(self, job: Job) -> list[Attempt]: ...

    async def aclose(self) -> None:
        """Release what the courier keeps between jobs (cached SMTP connections)."""
        ...


def describe(e: BaseException) -> str:
    """An exception as one line of failure text: ``ConnectionRefusedError: ...``."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
