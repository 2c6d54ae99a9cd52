"""The SMTP client both remote couriers share (``esmtp`` and ``relay``), postroom's own on
asyncio streams (``postroom.delivery.smtp``).

One Job is one destination. The client walks the targets (``mx.MxResolver``) in order and
uses the first address that gives a working session (``smtp.connect``, ``smtp.proto``); on
that one connection it runs as many transactions as the recipients need (``[queue]
recipients_per_transaction`` each; ``smtp.transaction``)::

    connect      refused / timeout / bad greeting -> next address
    EHLO         (HELO if EHLO is refused)
    STARTTLS     opportunistic / required / verify / never (``smtp.policy``)
    AUTH         relay only, and only over TLS; a refusal -> next address
    MAIL, RCPT   per recipient: 4xx DEFERRED, 5xx FAILED
    DATA         its reply applies to every accepted recipient of the transaction

When every address fails, all recipients still waiting are DEFERRED with the last error.
A connection lost during MAIL or RCPT gives the waiting recipients to the next address;
lost during DATA it DEFERS the whole transaction (``smtp.trouble``).

Sessions are kept for the next Job to the same destination (same route host, port and
policy) for ``idle_timeout`` seconds (``smtp.reuse``); ``aclose`` QUITs them.
"""

from __future__ import annotations

import logging

from postroom.delivery.mx import Destination, MxResolver, parse_destination
from postroom.delivery.smtp.chat import DataBlocks, parse_reply
from postroom.delivery.smtp.connect import Connector, Target, targets
from postroom.delivery.smtp.policy import Policy, TlsMode
from postroom.delivery.smtp.reuse import SessionCache
from postroom.delivery.smtp.session import Session
from postroom.delivery.smtp.transaction import (
    Group,
    check_message,
    group,
    send_group,
    transactions,
)
from postroom.delivery.smtp.trouble import (
    Interrupted,
    TargetFailed,
    bad_destination,
    every_route_refused,
    internal_error,
    no_address,
)
from postroom.envelope import Delivery
from postroom.errors import DeliveryError, PermanentFailure
from postroom.types import Attempt, Job, Outcome, from_error

__all__ = ["Policy", "SmtpClient", "TlsMode", "bad_destination", "destination_of",
           "parse_reply"]

log = logging.getLogger(__name__)


class SmtpClient:
    """Runs Jobs over SMTP; shared by ``EsmtpCourier`` and ``RelayCourier``."""

    def __init__(self, *, hostname: str, resolver: MxResolver, connect_timeout: float = 30.0,
                 command_timeout: float = 300.0, recipients_per_transaction: int = 100,
                 idle_timeout: float = 5.0, max_idle: int = 5, max_age: float = 300.0) -> None:
        self.hostname = hostname
        self.resolver = resolver
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.batch = max(1, recipients_per_transaction)
        self.connector = Connector(hostname=hostname, connect_timeout=connect_timeout,
                                   command_timeout=command_timeout)
        self.cache = SessionCache(idle_timeout=idle_timeout, max_idle=max_idle,
                                  max_age=max_age, quit_timeout=min(5.0, command_timeout))

    async def deliver(self, job: Job, destination: Destination, policy: Policy) -> list[Attempt]:
        done: dict[int, Attempt] = {}
        pending = list(job.deliveries)
        key = (job.host.lower(), policy.port, policy)
        session: Session | None = None
        reusable = False
        try:
            password = policy.password() if policy.username else ""
            session = await self.cache.take(key)
            todo: list[Target] | None = None
            last: DeliveryError = no_address(job.host)
            while pending:
                if session is None:
                    if todo is None:
                        todo = await targets(self.resolver, destination, policy)
                    if not todo:
                        break
                    target = todo.pop(0)
                    try:
                        session = await self.connector.open(target, policy, password,
                                                            destination.name)
                    except TargetFailed as e:
                        last = e.error
                        if e.plain_retry:  # opportunistic TLS failed: once more in plain text
                            todo.insert(0, target._replace(tls="never"))
                        continue
                try:
                    pending = await self._transactions(session, job, pending, done)
                except Interrupted as e:
                    last = e.error
                    pending = [d for d in pending if id(d) not in done]
                if pending or not session.alive:
                    await self.cache.close(session)
                    session = None
            every_route_refused(pending, last, done)
            reusable = True
        except DeliveryError as e:  # no targets, or a verdict on the whole message
            for d in job.deliveries:
                if id(d) not in done:
                    done[id(d)] = from_error(d, e, tls=session.tls if session else "")
            reusable = isinstance(e, PermanentFailure)
        except Exception as e:  # unexpected: temporary, never a bounce
            log.exception("%s: SMTP delivery to %s failed unexpectedly", job.queue_id, job.host)
            for d in job.deliveries:
                if id(d) not in done:
                    done[id(d)] = internal_error(d, e, session.remote if session else "")
        finally:
            if session is not None:
                if reusable and session.alive:
                    await self.cache.put(key, session)
                else:
                    await self.cache.close(session)
        return [done[id(d)] for d in job.deliveries]

    async def _transactions(self, session: Session, job: Job, pending: list[Delivery],
                            done: dict[int, Attempt]) -> list[Delivery]:
        """The transactions the recipients need; a message rendered per recipient gets
        one transaction each (its own sender and bytes), on the same connection."""
        if job.render is None:
            unsent = await transactions(session, job, pending, done, self.batch)
            if job.progress is not None:
                for d in pending:
                    attempt = done.get(id(d))
                    if attempt is not None and attempt.outcome is Outcome.SENT:
                        job.progress(d, attempt.reply)
            return unsent
        if pending:
            job.recipient(pending[0])  # the owner map, built once
        if session.supports("pipelining"):
            return await _chained(session, job, pending, done)
        left: list[Delivery] = []
        for i, d in enumerate(pending):
            left += await transactions(session, _copy(job, d), [d], done, 1)
            _progress(job, d, done)
            if not session.alive:
                return left + pending[i + 1:]
        return left

    async def aclose(self) -> None:
        await self.cache.aclose()


def _copy(job: Job, d: Delivery) -> Job:
    """The job of one personalised copy: its own sender and bytes."""
    sender, message = job.personal(d)
    one = Job(job.envelope, message, [d], job.queue_id, sender=sender,
              progress=job.progress)
    one._owners = job._owners  # same recipients: never rebuilt per copy
    return one


def _progress(job: Job, d: Delivery, done: dict[int, Attempt]) -> None:
    attempt = done.get(id(d))
    if job.progress is not None and attempt is not None and attempt.outcome is Outcome.SENT:
        job.progress(d, attempt.reply)


async def _chained(session: Session, job: Job, pending: list[Delivery],
                   done: dict[int, Attempt]) -> list[Delivery]:
    """A transaction per copy on a PIPELINING server, each copy's end written with the
    next copy's commands (``transaction.send_group``'s ``then``); returns the deliveries
    left when the connection died. A copy made for the chain but not written (the copy
    before it was refused) goes in its own turn, after an RSET if one is due, without
    being made again."""

    def prepared(d: Delivery, reset: bool) -> Group | None:
        one = _copy(job, d)
        check_message(session, one)  # as transactions() does: the message's own limits
        return group(session, one, [d], done, reset=reset)

    ahead: Group | None = None  # written with the last copy's end, not answered yet
    spare: Group | None = None  # made for the chain, not written (the last copy refused)
    blocks = DataBlocks()  # the copies differ in their header only
    for i, d in enumerate(pending):
        g: Group | None
        if ahead is not None:
            g = ahead
        elif spare is not None:  # rendered already: only an RSET may be needed first
            g = spare.with_reset(session.open_transaction)
        else:
            g = prepared(d, session.open_transaction)
        written, ahead, spare = ahead is not None, None, None
        then = None
        if g is not None and i + 1 < len(pending):
            try:
                then = prepared(pending[i + 1], False)
            except DeliveryError:
                then = None  # refused in its own turn
        try:
            if g is not None and await send_group(session, g, done, written=written,
                                                  then=then, blocks=blocks):
                ahead = then
            else:
                spare = then
        finally:
            session.transactions += 1
        _progress(job, d, done)
        if not session.alive:
            return pending[i + 1:]
    return []


def destination_of(job: Job) -> Destination | str:
    """The job's route host parsed, or the reason it cannot be."""
    try:
        return parse_destination(job.host)
    except ValueError as e:
        return str(e)
