"""Failure classification (Postfix's smtp_trouble.c): which replies and exceptions are
temporary or permanent, and the texts that say so.

    2xx          SENT
    5xx          FAILED (per recipient, or for the transaction's recipients)
    4xx          DEFERRED
    other        DEFERRED 451 4.5.0 "unexpected reply"
    lost during connect, greeting, EHLO, STARTTLS, AUTH, MAIL or RCPT
                 the next address (the recipients not yet answered wait for it)
    lost during DATA or the message
                 DEFERRED: it may or may not have arrived, and a duplicate beats a loss
    every route refused
                 DEFERRED with the last error, made temporary
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

from postroom.delivery.smtp.chat import Reply, parse_reply
from postroom.envelope import Delivery
from postroom.errors import DeliveryError, TemporaryFailure
from postroom.types import Attempt, Job, Outcome, describe, from_error

if TYPE_CHECKING:
    from postroom.delivery.smtp.session import Session


class TargetFailed(Exception):
    """This address did not give a usable session; try the next one."""

    def __init__(self, error: DeliveryError, *, plain_retry: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.plain_retry = plain_retry


class Interrupted(Exception):
    """The connection was lost before the transaction reached DATA."""

    def __init__(self, error: TemporaryFailure) -> None:
        super().__init__(str(error))
        self.error = error


def fail(status: str, text: str, remote: str) -> TargetFailed:
    return TargetFailed(TemporaryFailure(451, status, text, remote=remote))


def lost(session: Session, stage: str, why: str) -> Interrupted:
    return Interrupted(TemporaryFailure(451, "4.4.2", f"lost connection with {session.remote} "
                                        f"during {stage}: {why}", remote=session.remote))


def attempt(delivery: Delivery, reply: Reply, session: Session) -> Attempt:
    """The outcome a reply gives the recipient it answers."""
    code = reply.code
    status, text = parse_reply(code, reply.message)
    if 200 <= code < 300:
        outcome = Outcome.SENT
    elif 500 <= code < 600:
        outcome = Outcome.FAILED
    else:
        outcome = Outcome.DEFERRED
        if not 400 <= code < 500:  # nonsense from the server: try again later
            text = f"unexpected reply {code} {reply.message}".strip()
            code, status = 451, "4.5.0"
    return Attempt(delivery, outcome, code, status, text, session.remote, session.tls)


def lost_in_message(accepted: list[Delivery], session: Session, why: str,
                    done: dict[int, Attempt]) -> None:
    """The connection died while the message was going out: it may or may not have
    arrived, so every recipient of the transaction is deferred (a duplicate beats a loss)."""
    for d in accepted:
        done[id(d)] = Attempt(d, Outcome.DEFERRED, 451, "4.4.2", f"lost connection with "
                              f"{session.remote} while sending the message: {why}",
                              session.remote, session.tls)


def no_address(host: str) -> TemporaryFailure:
    """The error when there was nothing to try at all."""
    return TemporaryFailure(451, "4.4.1", f"no address to connect to for {host}")


def every_route_refused(pending: list[Delivery], last: DeliveryError,
                        done: dict[int, Attempt]) -> None:
    """Every address failed: the recipients still waiting are DEFERRED with the last error
    (a permanent one made temporary: another address may yet take the mail)."""
    for d in pending:
        done[id(d)] = from_error(d, as_temporary(last))


def internal_error(delivery: Delivery, e: BaseException, remote: str) -> Attempt:
    """Something unexpected: temporary, never a bounce."""
    return Attempt(delivery, Outcome.DEFERRED, 451, "4.3.0", f"internal error: {describe(e)}",
                   remote)


def bad_destination(job: Job, reason: str) -> list[Attempt]:
    """A malformed route host came from our own maps: a configuration problem, so DEFERRED
    (the mail waits for the fix) rather than bounced."""
    return [Attempt(d, Outcome.DEFERRED, 451, "4.3.5", f"bad destination host in route: {reason}")
            for d in job.deliveries]


def as_temporary(error: DeliveryError) -> DeliveryError:
    if not error.permanent:
        return error
    return TemporaryFailure(451, "4" + error.enhanced[1:], error.text, remote=error.remote)


def reason(e: BaseException) -> str:
    """``Connection refused`` rather than an exception's wrapper text, where there is one."""
    cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
    if isinstance(cause, ssl.SSLCertVerificationError):  # an OSError whose errno means nothing
        return f"certificate verify failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return str(cause.reason or cause)
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)  # asyncio's own text is "Connect call failed (...)"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(cause, TimeoutError) and not str(cause).strip():
        return "Timed out waiting for server response"
    return str(e).strip() or describe(e)
