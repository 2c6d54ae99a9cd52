"""The SMTP client both remote couriers share (``esmtp`` and ``relay``), on aiosmtplib.

One Job is one destination. The client walks the targets (``mx.MxResolver``) in order and
uses the first address that gives a working session; on that one connection it runs as
many transactions as the recipients need (``[queue] recipients_per_transaction`` each;
RSET only after a transaction that was left open, e.g. when every RCPT was refused: one that
ended with the reply to its data needs none, RFC 5321 4.1.4)::

    connect      refused / timeout / bad greeting -> next address
    EHLO         (HELO if EHLO is refused)
    STARTTLS     opportunistic: when offered, without certificate checks; a failed
                 handshake is retried once in plain text. required: not offered, refused
                 or failed -> next address (4.7.4 / 4.7.5). never: not tried
    AUTH         relay only, and only over TLS; a refusal -> next address
    MAIL FROM    SIZE=, BODY=8BITMIME (8-bit message, offered), SMTPUTF8, RET=/ENVID=
    RCPT TO      NOTIFY=/ORCPT= when DSN is offered; 4xx DEFERRED, 5xx FAILED, per recipient
    DATA         its reply applies to every accepted recipient of the transaction

A message that needs SMTPUTF8 is FAILED ``5.6.7`` by a server without it; one larger than
the server's SIZE is FAILED ``5.3.4``. An 8-bit message goes to a server without 8BITMIME
unchanged (as Postfix does). When every address fails, all recipients still waiting are
DEFERRED with the last error. A connection lost during MAIL or RCPT gives the waiting
recipients to the next address; lost during DATA it DEFERS the whole transaction: the
message may or may not have arrived, and a duplicate beats a loss.

Sessions are kept for the next Job to the same destination (same route host, port and
policy) for ``idle_timeout`` seconds; ``aclose`` QUITs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectResponseError,
    SMTPConnectTimeoutError,
    SMTPException,
    SMTPHeloError,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from postroom.delivery.mx import Destination, MxResolver, ip_literal, parse_destination
from postroom.delivery.pipelining import ReplyReader, data_block
from postroom.envelope import Delivery
from postroom.errors import DeliveryError, PermanentFailure, TemporaryFailure
from postroom.types import Attempt, Job, Outcome, describe, from_error

log = logging.getLogger(__name__)

TlsMode = Literal["opportunistic", "required", "verify", "never"]

_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")  # never in a command we send (RFC 5321 4.1.1)
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


@dataclass(frozen=True, slots=True)
class Policy:
    """How to talk to one destination: port, TLS mode and (relays) credentials."""

    port: int = 25
    tls: TlsMode = "opportunistic"
    username: str = ""
    password_file: Path | None = None
    ca_file: Path | None = None  # tls = verify: trust these CAs (None: the system's)

    def password(self) -> str:
        if self.password_file is None:
            return ""
        try:
            return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise TemporaryFailure(451, "4.3.5", f"cannot read the password for "
                                   f"{self.username}: {e.strerror}: {self.password_file}"
                                   ) from None


@dataclass(eq=False)
class _Session:
    smtp: aiosmtplib.SMTP
    host: str
    ip: str
    tls: str = ""
    opened: float = field(default_factory=time.monotonic)
    transactions: int = 0
    open_transaction: bool = False  # MAIL was accepted and the data's reply not yet read
    route_name: str = ""  # the route's host without brackets (TLS verify checks it)
    idle_timer: asyncio.TimerHandle | None = None

    @property
    def remote(self) -> str:
        return f"{self.host} [{self.ip}]"

    @property
    def alive(self) -> bool:
        return self.smtp.is_connected


class _TargetFailed(Exception):
    """This address did not give a usable session; try the next one."""

    def __init__(self, error: DeliveryError, *, plain_retry: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.plain_retry = plain_retry


class _Interrupted(Exception):
    """The connection was lost before the transaction reached DATA."""

    def __init__(self, error: TemporaryFailure) -> None:
        super().__init__(str(error))
        self.error = error


def _tls_context() -> ssl.SSLContext:
    """Opportunistic TLS (RFC 7435): encrypt, do not authenticate the server."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def parse_reply(code: int, message: str) -> tuple[str, str]:
    """Split an SMTP reply into the enhanced status and the text.

    ``250, "2.0.0 Ok: queued as X"`` -> ``("2.0.0", "Ok: queued as X")``. A reply without an
    enhanced code, or with one whose class disagrees with the basic code, gets ``X.0.0``
    from the basic code. Lines of a multi-line reply are joined with spaces.
    """
    klass = str(code)[0] if code else "4"
    status = ""
    words: list[str] = []
    for line in message.splitlines() or [""]:
        m = _ENHANCED.match(line)
        if m:
            status = status or line[: m.end()].strip()
            line = line[m.end():]
        if line.strip():
            words.append(line.strip())
    if not status or status[0] != klass:
        status = f"{klass}.0.0" if not status else f"{klass}{status[1:]}"
    return status, " ".join(words)


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
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self.max_age = max_age
        self._tls = _tls_context()
        self._verify_contexts: dict[Path | None, ssl.SSLContext] = {}
        self._idle: dict[tuple[str, int, Policy], list[_Session]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # -- one job ----------------------------------------------------------------------------

    async def deliver(self, job: Job, destination: Destination, policy: Policy) -> list[Attempt]:
        done: dict[int, Attempt] = {}
        pending = list(job.deliveries)
        key = (job.host.lower(), policy.port, policy)
        session: _Session | None = None
        reusable = False
        try:
            password = policy.password() if policy.username else ""
            session = self._take(key)
            targets: list[tuple[str, str, TlsMode]] | None = None
            last: DeliveryError = TemporaryFailure(451, "4.4.1",
                                                   f"no address to connect to for {job.host}")
            while pending:
                if session is None:
                    if targets is None:
                        found = await self.resolver.targets(destination)
                        targets = [(t.host, ip, policy.tls) for t in found for ip in t.addresses]
                    if not targets:
                        break
                    host, ip, tls = targets.pop(0)
                    try:
                        session = await self._open(host, ip, policy, password, tls,
                                                   destination.name)
                    except _TargetFailed as e:
                        last = e.error
                        if e.plain_retry:  # opportunistic TLS failed: once more in plain text
                            targets.insert(0, (host, ip, "never"))
                        continue
                try:
                    pending = await self._transactions(session, job, pending, done)
                except _Interrupted as e:
                    last = e.error
                    pending = [d for d in pending if id(d) not in done]
                if pending or not session.alive:
                    await self._close(session)
                    session = None
            for d in pending:
                done[id(d)] = from_error(d, _as_temporary(last))
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
                    done[id(d)] = Attempt(d, Outcome.DEFERRED, 451, "4.3.0",
                                          f"internal error: {describe(e)}",
                                          session.remote if session else "")
        finally:
            if session is not None:
                if reusable and session.alive:
                    await self._put(key, session)
                else:
                    await self._close(session)
        return [done[id(d)] for d in job.deliveries]

    # -- sessions ---------------------------------------------------------------------------

    async def _open(self, host: str, ip: str, policy: Policy, password: str,
                    tls: TlsMode, route_name: str) -> _Session:
        smtp = aiosmtplib.SMTP(hostname=ip, port=policy.port, local_hostname=self.hostname,
                               timeout=self.command_timeout, start_tls=False,
                               validate_certs=False, tls_context=self._tls)
        session = _Session(smtp, host, ip, route_name=route_name)
        remote = session.remote
        stage = "greeting"
        try:
            try:
                await smtp.connect(timeout=self.connect_timeout)
            except SMTPConnectResponseError as e:
                raise _fail("4.4.0", f"{remote} refused to talk to us: {e.code} {e.message}",
                            remote) from None
            except SMTPConnectTimeoutError:
                raise _fail("4.4.1", f"connection to {remote} timed out", remote) from None
            except (SMTPException, OSError) as e:
                raise _fail("4.4.1", f"cannot connect to {remote}: {_reason(e)}",
                            remote) from None
            stage = "EHLO"
            await self._hello(session)
            stage = "STARTTLS"
            await self._starttls(session, tls, policy)
            if policy.username:
                stage = "AUTH"
                await self._auth(session, policy, password)
            log.debug("session with %s (%s)", remote, session.tls or "plain")
            return session
        except _TargetFailed:
            smtp.close()
            raise
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as e:
            smtp.close()
            raise _fail("4.4.2", f"lost connection with {remote} during {stage}: {_reason(e)}",
                        remote) from None

    async def _hello(self, session: _Session) -> None:
        smtp = session.smtp
        try:
            await smtp.ehlo()
        except SMTPHeloError as e:
            if not smtp.is_connected:
                raise SMTPServerDisconnected(f"{e.code} {e.message}") from None
            try:
                await smtp.helo()
            except SMTPHeloError as e2:
                raise _fail("4.4.0", f"{session.remote} refused EHLO and HELO: {e.code} "
                            f"{e.message}; {e2.code} {e2.message}", session.remote) from None

    async def _starttls(self, session: _Session, mode: TlsMode, policy: Policy) -> None:
        smtp, remote = session.smtp, session.remote
        if mode == "never":
            return
        if not smtp.supports_extension("starttls"):
            if mode != "opportunistic":
                raise _fail("4.7.4", f"TLS required but not offered by {remote}", remote)
            return
        if mode == "verify":  # the name to check the certificate against, IP or host name
            # the name the route asked for, not what DNS answered (an MX name can be
            # spoofed): for [host] and [IP] routes the same, for MX routes the domain
            context, sni = self._verifying(policy.ca_file, remote), session.route_name
        else:
            context, sni = self._tls, None if ip_literal(session.host) else session.host
        try:
            await smtp.starttls(server_hostname=sni, tls_context=context)
        except SMTPResponseException as e:
            if mode != "opportunistic" or not smtp.is_connected:
                raise _fail("4.7.5", f"{remote} refused STARTTLS: {e.code} {e.message}",
                            remote) from None
            return  # opportunistic: carry on in plain text on this connection
        except (ssl.SSLError, SMTPServerDisconnected, SMTPTimeoutError, OSError) as e:
            raise self._tls_failed(remote, e, mode) from None
        ssl_object = smtp.get_transport_info("ssl_object")
        session.tls = ssl_object.version() if ssl_object is not None else "TLS"
        try:
            await smtp.ehlo()  # RFC 3207: forget what was said before TLS
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as e:
            # with TLS 1.3 a server that dislikes the handshake says so only now
            raise self._tls_failed(remote, e, mode) from None

    def _verifying(self, ca_file: Path | None, remote: str) -> ssl.SSLContext:
        """``tls = "verify"``: the chain must lead to a trusted CA (``ca_file``, else the
        system's) and the certificate must name the host."""
        context = self._verify_contexts.get(ca_file)
        if context is None:
            try:
                context = ssl.create_default_context(
                    ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
            except (OSError, ssl.SSLError) as e:
                raise _fail("4.7.5", f"cannot load the CA certificates {ca_file} to verify "
                            f"{remote}: {getattr(e, 'strerror', None) or e}", remote) from None
            self._verify_contexts[ca_file] = context
        return context

    @staticmethod
    def _tls_failed(remote: str, e: BaseException, mode: TlsMode) -> _TargetFailed:
        error = TemporaryFailure(451, "4.7.5", f"TLS handshake with {remote} failed: "
                                 f"{_reason(e)}", remote=remote)
        return _TargetFailed(error, plain_retry=mode == "opportunistic")

    async def _auth(self, session: _Session, policy: Policy, password: str) -> None:
        remote = session.remote
        if not session.tls:
            raise _fail("4.7.0", f"not sending the password for {policy.username} to {remote} "
                        "without TLS", remote)
        try:
            await session.smtp.login(policy.username, password)
        except SMTPAuthenticationError as e:
            raise _fail("4.7.0", f"authentication as {policy.username} at {remote} failed: "
                        f"{e.code} {e.message}", remote) from None
        except SMTPResponseException as e:
            raise _fail("4.7.0", f"AUTH at {remote} failed: {e.code} {e.message}",
                        remote) from None
        except SMTPException as e:
            if not session.smtp.is_connected:
                raise SMTPServerDisconnected(str(e)) from None
            raise _fail("4.7.0", f"cannot authenticate at {remote}: {e}", remote) from None

    # -- transactions -----------------------------------------------------------------------

    async def _transactions(self, session: _Session, job: Job, pending: list[Delivery],
                            done: dict[int, Attempt]) -> list[Delivery]:
        """Run transactions for ``pending``; return those left when the connection died."""
        smtp, remote = session.smtp, session.remote
        if job.envelope.smtputf8 and not smtp.supports_extension("smtputf8"):
            raise PermanentFailure(550, "5.6.7", f"{remote} does not support SMTPUTF8, which "
                                   "this message needs", remote=remote)
        limit = smtp.esmtp_extensions.get("size", "")
        if limit.isdigit() and 0 < int(limit) < len(job.message):
            raise PermanentFailure(552, "5.3.4", f"message size {len(job.message)} exceeds "
                                   f"the limit {limit} of {remote}", remote=remote)
        mail_args = _mail_args(smtp, job)
        pipelining = smtp.supports_extension("pipelining")
        remaining = list(pending)
        while remaining:
            chunk, remaining = remaining[: self.batch], remaining[self.batch:]
            run = self._pipelined if pipelining else self._transaction
            try:
                await run(session, job, chunk, mail_args, done)
            finally:
                session.transactions += 1
            if not session.alive:
                return remaining
        return []

    async def _pipelined(self, session: _Session, job: Job, chunk: list[Delivery],
                         mail_args: list[bytes], done: dict[int, Attempt]) -> None:
        """One transaction as two writes (RFC 2920), for servers that offer PIPELINING;
        the outcomes are those of ``_transaction``: each reply counts for the recipient it
        answers, including when the connection is lost after some of them."""
        smtp, remote = session.smtp, session.remote
        dsn = smtp.supports_extension("dsn")
        mail = b" ".join(mail_args)
        if _CONTROL.search(mail):
            raise PermanentFailure(553, "5.1.7", "the sender address contains control "
                                   "characters", remote=remote)
        rcpts: list[tuple[Delivery, bytes]] = []
        for d in chunk:
            command = b" ".join(_rcpt_args(job, d, dsn))
            if _CONTROL.search(command):
                done[id(d)] = Attempt(d, Outcome.FAILED, 553, "5.1.3", "the recipient "
                                      "address contains control characters", remote)
            else:
                rcpts.append((d, command))
        if not rcpts:
            return
        reset = session.open_transaction
        commands = [b"RSET"] * reset + [mail] + [c for _, c in rcpts] + [b"DATA"]
        replies: list[SMTPResponse] = []
        accepted: list[Delivery] = []
        stage = "MAIL FROM"
        try:
            with ReplyReader.lend(smtp) as reader:
                reader.write(b"\r\n".join(commands) + b"\r\n")
                while len(replies) < len(commands):  # RFC 5321 4.5.3.2: a timeout per reply
                    replies.append(await reader.reply(self.command_timeout))
                if reset:
                    if replies[0].code != 250:
                        smtp.close()
                        raise _Interrupted(TemporaryFailure(
                            451, "4.4.2", f"{remote} refused RSET: {replies[0].code} "
                            f"{replies[0].message}", remote=remote))
                    session.open_transaction = False
                accepted = self._judge(session, replies[reset:], rcpts, done)
                data = replies[-1]
                if data.code == 354 and not accepted:
                    # a server out of step with us (it should have said 503): sending the
                    # ending could make it deliver an empty message
                    smtp.close()
                    return
                if not accepted:
                    return
                if data.code != 354:
                    for d in accepted:
                        done[id(d)] = self._attempt(d, data, session)
                    return
                stage = "message"
                reader.write(data_block(job.message))
                final = await reader.reply(self.command_timeout)
                session.open_transaction = False
        except (SMTPServerDisconnected, TimeoutError, OSError) as e:
            smtp.close()
            why = "no reply in time" if isinstance(e, TimeoutError) else _reason(e)
            if stage == "message":
                _lost_in_message(accepted, session, why, done)
                return
            if replies[reset:]:  # what was answered before the loss stands
                self._judge(session, replies[reset:], rcpts, done)
            if len(replies) > reset:
                stage = "RCPT TO"
            raise _Interrupted(TemporaryFailure(
                451, "4.4.2", f"lost connection with {remote} during {stage}: {why}",
                remote=remote)) from None
        for d in accepted:
            done[id(d)] = self._attempt(d, final, session)

    def _judge(self, session: _Session, replies: list[SMTPResponse],
               rcpts: list[tuple[Delivery, bytes]], done: dict[int, Attempt]) -> list[Delivery]:
        """Record the MAIL and RCPT replies received so far (``replies`` starts with
        MAIL's); returns the recipients the server accepted."""
        mail, answers = replies[0], replies[1:1 + len(rcpts)]
        if mail.code != 250:  # the RCPTs after a refused MAIL mean nothing
            for d, _ in rcpts:
                done[id(d)] = self._attempt(d, mail, session)
            return []
        session.open_transaction = True
        accepted = []
        for (d, _), reply in zip(rcpts, answers, strict=False):
            if reply.code in (250, 251):
                accepted.append(d)
            else:
                done[id(d)] = self._attempt(d, reply, session)
        return accepted

    async def _transaction(self, session: _Session, job: Job, chunk: list[Delivery],
                           mail_args: list[bytes], done: dict[int, Attempt]) -> None:
        smtp = session.smtp
        dsn = smtp.supports_extension("dsn")
        stage = "RSET"
        try:
            if session.open_transaction:
                reply = await smtp.execute_command(b"RSET")
                if reply.code != 250:
                    smtp.close()
                    raise _Interrupted(TemporaryFailure(
                        451, "4.4.2", f"{session.remote} refused RSET: {reply.code} "
                        f"{reply.message}", remote=session.remote))
            session.open_transaction = False
            stage = "MAIL FROM"
            reply = await smtp.execute_command(*mail_args)
            if reply.code != 250:
                for d in chunk:
                    done[id(d)] = self._attempt(d, reply, session)
                return
            session.open_transaction = True
            stage = "RCPT TO"
            accepted: list[Delivery] = []
            for d in chunk:
                reply = await smtp.execute_command(*_rcpt_args(job, d, dsn))
                if reply.code in (250, 251):
                    accepted.append(d)
                else:
                    done[id(d)] = self._attempt(d, reply, session)
                if not smtp.is_connected:  # 421: the server is closing
                    raise SMTPServerDisconnected(f"{reply.code} {reply.message}")
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as e:
            smtp.close()
            raise _Interrupted(TemporaryFailure(
                451, "4.4.2", f"lost connection with {session.remote} during {stage}: "
                f"{_reason(e)}", remote=session.remote)) from None
        if not accepted:
            return
        try:
            reply = await smtp.data(job.message)
            session.open_transaction = False
        except SMTPResponseException as e:
            reply = SMTPResponse(e.code, e.message)
            # a refused DATA command leaves the transaction open, a refused message ends it,
            # and aiosmtplib does not say which: the next transaction starts with RSET
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as e:
            smtp.close()
            _lost_in_message(accepted, session, _reason(e), done)
            return
        for d in accepted:
            done[id(d)] = self._attempt(d, reply, session)

    @staticmethod
    def _attempt(delivery: Delivery, reply: SMTPResponse, session: _Session) -> Attempt:
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

    # -- the connection cache ---------------------------------------------------------------

    def _take(self, key: tuple[str, int, Policy]) -> _Session | None:
        idle = self._idle.get(key)
        while idle:
            session = idle.pop()
            if session.idle_timer is not None:
                session.idle_timer.cancel()
                session.idle_timer = None
            if session.alive and time.monotonic() - session.opened < self.max_age:
                return session
            self._close_later(session)
        return None

    async def _put(self, key: tuple[str, int, Policy], session: _Session) -> None:
        idle = self._idle.setdefault(key, [])
        if (self.idle_timeout <= 0 or len(idle) >= self.max_idle
                or time.monotonic() - session.opened >= self.max_age):
            await self._close(session)
            return
        loop = asyncio.get_running_loop()
        session.idle_timer = loop.call_later(self.idle_timeout, self._expire, key, session)
        idle.append(session)

    def _expire(self, key: tuple[str, int, Policy], session: _Session) -> None:
        idle = self._idle.get(key, [])
        if session in idle:
            idle.remove(session)
            session.idle_timer = None
            self._close_later(session)

    def _close_later(self, session: _Session) -> None:
        task = asyncio.get_running_loop().create_task(self._close(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, session: _Session) -> None:
        """QUIT politely (briefly), then drop the connection whatever happened."""
        smtp = session.smtp
        if smtp.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(smtp.quit(), timeout=min(5.0, self.command_timeout))
        smtp.close()

    async def aclose(self) -> None:
        sessions = [s for idle in self._idle.values() for s in idle]
        self._idle.clear()
        for s in sessions:
            if s.idle_timer is not None:
                s.idle_timer.cancel()
        await asyncio.gather(*(self._close(s) for s in sessions), *self._closing)


def destination_of(job: Job) -> Destination | str:
    """The job's route host parsed, or the reason it cannot be."""
    try:
        return parse_destination(job.host)
    except ValueError as e:
        return str(e)


def bad_destination(job: Job, reason: str) -> list[Attempt]:
    """A malformed route host came from our own maps: a configuration problem, so DEFERRED
    (the mail waits for the fix) rather than bounced."""
    return [Attempt(d, Outcome.DEFERRED, 451, "4.3.5", f"bad destination host in route: {reason}")
            for d in job.deliveries]


def _lost_in_message(accepted: list[Delivery], session: _Session, why: str,
                     done: dict[int, Attempt]) -> None:
    """The connection died while the message was going out: it may or may not have
    arrived, so every recipient of the transaction is deferred (a duplicate beats a loss)."""
    for d in accepted:
        done[id(d)] = Attempt(d, Outcome.DEFERRED, 451, "4.4.2", f"lost connection with "
                              f"{session.remote} while sending the message: {why}",
                              session.remote, session.tls)


def _fail(status: str, text: str, remote: str) -> _TargetFailed:
    return _TargetFailed(TemporaryFailure(451, status, text, remote=remote))


def _as_temporary(error: DeliveryError) -> DeliveryError:
    if not error.permanent:
        return error
    return TemporaryFailure(451, "4" + error.enhanced[1:], error.text, remote=error.remote)


def _reason(e: BaseException) -> str:
    """``Connection refused`` rather than aiosmtplib's wrapper text, where there is a cause."""
    cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
    if isinstance(cause, ssl.SSLCertVerificationError):  # an OSError whose errno means nothing
        return f"certificate verify failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return str(cause.reason or cause)
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)  # asyncio's own text is "Connect call failed (...)"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(e).strip() or describe(e)


def _address(text: str) -> bytes:
    return f"<{text}>".encode()


def _mail_args(smtp: aiosmtplib.SMTP, job: Job) -> list[bytes]:
    env = job.envelope
    args = [b"MAIL", b"FROM:" + _address(env.sender)]
    if smtp.supports_extension("size"):
        args.append(f"SIZE={len(job.message)}".encode())
    if (env.body == "8BITMIME" or not job.message.isascii()) \
            and smtp.supports_extension("8bitmime"):
        args.append(b"BODY=8BITMIME")
    if env.smtputf8:
        args.append(b"SMTPUTF8")
    if smtp.supports_extension("dsn"):
        if env.ret:
            args.append(f"RET={env.ret}".encode())
        if env.envid:
            args.append(f"ENVID={env.envid}".encode())
    return args


def _rcpt_args(job: Job, delivery: Delivery, dsn: bool) -> list[bytes]:
    args = [b"RCPT", b"TO:" + _address(delivery.user)]
    recipient = job.recipient(delivery)
    if dsn and recipient is not None:
        if recipient.notify:
            args.append(f"NOTIFY={','.join(recipient.notify)}".encode())
        if recipient.orcpt:
            args.append(f"ORCPT={recipient.orcpt}".encode())
    return args
