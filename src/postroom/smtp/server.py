"""The SMTP protocol: aiosmtpd's engine with the few things a public MTA needs on top.

- a connect-time verdict (quiescent 421, 554 for clients the listener does not serve),
- RFC 3461 DSN parameters (RET, ENVID on MAIL; NOTIFY, ORCPT on RCPT), which aiosmtpd
  would refuse with 555,
- AUTH PLAIN / LOGIN checked asynchronously, with a per-client failure limit,
- a drain mode for SIGTERM (``close_if_idle``),
- the session limits of ``postroom.smtp.limits`` (replies and errors counted by a
  ``SessionGuard``, a deadline for the whole session), each ending it with a 421,
- DATA read in blocks rather than a line at a time (see ``smtp_DATA``).

What adapts aiosmtpd itself (enhanced status codes, implicit TLS, the 421 on idle
timeout, its per-connection scans) is in ``adapter``. Policy stays in ``handler``; this
module only speaks the protocol.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import ssl
from typing import Any

from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword

from postroom.smtp.adapter import AdaptedSMTP
from postroom.smtp.auth import AUTH_PAUSED
from postroom.smtp.limits import SessionGuard, session_too_long
from postroom.smtp.policy import shutdown_reply

# Replies of DATA, in aiosmtpd's words where it has them (see smtp_DATA)
DATA_NEEDS_RCPT = "503 Error: need RCPT command"
DATA_SYNTAX = "501 Syntax: DATA"
DATA_GO_AHEAD = "354 End data with <CR><LF>.<CR><LF>"
DATA_TOO_BIG = "552 5.3.4 Message size exceeds fixed limit"
DATA_LINE_TOO_LONG = "500 5.5.2 Line too long (limit is {} characters, RFC 5321 4.5.3.1.6)"
# "<local@domain> params": the everyday form, parsed here without the email package (whose
# parser, and a class aiosmtpd defines on every call, cost more than the rest of MAIL/RCPT)
_SIMPLE_PATH = re.compile(
    r"\s*<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)>(.*)\Z", re.DOTALL)
_DSN_MAIL = re.compile(r"\s+(RET|ENVID)=(\S*)", re.IGNORECASE)
_DSN_RCPT = re.compile(r"\s+(NOTIFY|ORCPT)=(\S*)", re.IGNORECASE)
_XTEXT = re.compile(r"^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$")
NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_END_OF_DATA = b"\r\n.\r\n"
# read() takes at most this much; more than the reader ever buffers (its transport pauses
# past 2 x line length, after at most one 256 KiB read), so each read empties the buffer
_READ_ALL = 1 << 22
_OVERSIZE = b"(over the size limit)"  # compared by identity
# a timer may fire this much before its time (libuv counts in milliseconds)
_TIMER_SLACK = 0.005


_long_lines: dict[int, re.Pattern[bytes]] = {}
_MANY_LINES = 10_000


def has_long_line(content: bytes, limit: int) -> bool:
    """Whether a line (ended by CR, LF or CRLF) is longer than ``limit`` octets. Splitting
    is fastest for an everyday message; a body of very many lines is searched with a regex
    instead, so that it makes no million objects."""
    if content.count(b"\n") < _MANY_LINES:
        return max(map(len, content.splitlines()), default=0) > limit
    pattern = _long_lines.get(limit)
    if pattern is None:  # a line start (start, after LF, or a bare CR), then too many octets
        pattern = _long_lines[limit] = re.compile(rb"(?m)(?:^|\r)[^\r\n]{%d}" % (limit + 1))
    return pattern.search(content) is not None


class DsnError(ValueError):
    pass


def parse_mail_dsn(arg: str) -> tuple[str, dict[str, str]]:
    """Strip RET/ENVID from a MAIL argument; return the rest and the parameters."""
    found: dict[str, str] = {}

    def take(m: re.Match[str]) -> str:
        key, value = m.group(1).upper(), m.group(2)
        if key in found:
            raise DsnError(f"duplicate {key} parameter")
        if key == "RET":
            value = value.upper()
            if value not in ("FULL", "HDRS"):
                raise DsnError("RET must be FULL or HDRS")
        elif not value or len(value) > 100 or not _XTEXT.match(value):
            raise DsnError("ENVID must be 1-100 characters of xtext")
        found[key] = value
        return ""

    return _DSN_MAIL.sub(take, arg), found


def parse_rcpt_dsn(arg: str) -> tuple[str, dict[str, Any]]:
    found: dict[str, Any] = {}

    def take(m: re.Match[str]) -> str:
        key, value = m.group(1).upper(), m.group(2)
        if key in found:
            raise DsnError(f"duplicate {key} parameter")
        if key == "NOTIFY":
            words = [w.upper() for w in value.split(",")]
            if words == ["NEVER"]:
                found[key] = ["NEVER"]
            elif words and all(w in NOTIFY_WORDS for w in words):
                found[key] = sorted(set(words))
            else:
                raise DsnError("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")
        else:
            addr_type, semi, text = value.partition(";")
            if not semi or not addr_type or not _XTEXT.match(text) or len(value) > 500:
                raise DsnError("ORCPT must be addr-type;xtext, e.g. rfc822;user@example.org")
            found[key] = value
        return ""

    return _DSN_RCPT.sub(take, arg), found


class PostroomSMTP(AdaptedSMTP):
    """One SMTP session. ``handler`` is a ``postroom.smtp.handler.Handler``."""

    __slots__ = ("_ended", "_session_end", "guard", "line_length", "mail_dsn", "rcpt_dsn")

    def __init__(self, handler: Any, *, implicit_tls: bool = False, line_length: int = 998,
                 **kwargs: Any) -> None:
        super().__init__(handler, implicit_tls=implicit_tls, line_length=line_length,
                         **kwargs)
        self.line_length = line_length
        self.mail_dsn: dict[str, str] = {}
        self.rcpt_dsn: dict[str, Any] = {}
        self.guard: SessionGuard | None = None  # set by the handler at connect
        self._session_end: float | None = None  # loop time; see _reset_timeout
        self._ended = False  # a limit ended the session: nothing more is written

    # -- connection ---------------------------------------------------------------------

    @property
    def tls_info(self) -> tuple[str, str]:
        """(protocol version, cipher) of this session, or ("", "") in the clear."""
        transport = self.transport
        obj: ssl.SSLObject | None = transport.get_extra_info("ssl_object") if transport else None
        if obj is None:
            return "", ""
        cipher = obj.cipher()
        return obj.version() or "", cipher[0] if cipher else ""

    async def _handle_client(self) -> None:
        refusal = self.event_handler.connect_reply(self)
        if refusal:
            await self.push(refusal)
            if self.transport is not None:
                self.transport.close()
            return
        self.event_handler.opened(self)
        try:
            await super()._handle_client()
        finally:
            self.event_handler.closed(self)

    # -- limits ---------------------------------------------------------------------------

    def end_at(self, seconds: float) -> None:
        """End the session ``seconds`` from now, whatever it is doing."""
        self._session_end = self.loop.time() + seconds
        self._reset_timeout()

    # The session's deadline shares the idle timer (aiosmtpd keeps one armed from connect
    # to close, reset at each command): the timer is set for whichever comes first, so a
    # session holds one timer, not two.
    def _reset_timeout(self, duration: float | None = None) -> None:
        delay = duration or self._timeout_duration
        if self._session_end is not None:
            # at least a millisecond: aiosmtpd reads 0 as "the idle timeout"
            delay = min(delay, max(0.001, self._session_end - self.loop.time()))
        super()._reset_timeout(delay)  # type: ignore[no-untyped-call, unused-ignore]

    def _timeout_cb(self) -> None:
        end = self._session_end
        if end is not None and self.loop.time() >= end - _TIMER_SLACK:
            self._cut(session_too_long(self.hostname))
        else:
            super()._timeout_cb()

    def _cut(self, reply: str) -> None:
        """Send ``reply`` (a 421), log it, close; the session's task ends at once."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._ended = True
        self._writer.write(reply.encode() + b"\r\n")
        self.event_handler.cut(self, reply)
        transport.close()
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()  # no further pipelined command is read

    async def push(self, status: str | bytes) -> None:
        if self._ended:  # a pipelined command read before the cut: no reply after the 421
            await asyncio.sleep(0)  # where the cancelled task stops
            return
        if self.guard is None or self._ehlo_lines is not None or isinstance(status, bytes):
            await super().push(status)
            return
        ending = self.guard.counted(status)
        await super().push(status)
        if ending is not None:
            self._cut(ending)

    def close_if_idle(self) -> bool:
        """For a drain: a session between transactions is sent ``421 4.3.2 <host> Service
        shutting down`` and closed (True); one inside a transaction is left to finish it
        (False)."""
        envelope = self.envelope
        if envelope is not None and envelope.mail_from:
            return False
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._writer.write(shutdown_reply(self.hostname).encode() + b"\r\n")
            transport.close()
        return True

    # -- commands -------------------------------------------------------------------------

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        m = _SIMPLE_PATH.match(arg)
        if m is None or ".." in m.group(1):
            try:  # quoting, comments, literals, UTF-8, null
                address, rest = super()._getaddr(arg)
            except IndexError:  # the email package on "<", "<@", '<"': a syntax error
                return None, None
            path = arg.lstrip()
            if address and rest is not None and path.startswith("<@"):
                # the email package drops a source route (<@a,@b:user@c>) without a word:
                # keep it, so the handler refuses it at RCPT (and drops it from MAIL)
                address = path[: len(path) - len(rest)].strip()[1:-1] or address
            return address, rest
        address = m.group(1)
        if self.local_part_limit and address.rfind("@") > self.local_part_limit:
            return None, None
        return address, m.group(2).lstrip(" \t")

    async def smtp_MAIL(self, arg: str | None) -> None:
        try:
            rest, self.mail_dsn = parse_mail_dsn(arg or "")
        except DsnError as e:
            await self.push(f"501 5.5.4 {e}")
            return
        await super().smtp_MAIL(rest if arg is not None else None)

    async def smtp_RCPT(self, arg: str | None) -> None:
        try:
            rest, self.rcpt_dsn = parse_rcpt_dsn(arg or "")
        except DsnError as e:
            await self.push(f"501 5.5.4 {e}")
            return
        await super().smtp_RCPT(rest if arg is not None else None)

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading the message in blocks instead of one ``readuntil`` per
        line (a quarter of the intake's CPU went there). The rules are aiosmtpd's and RFC
        5321's: only <CRLF>.<CRLF> ends the data, a leading dot is removed from every line,
        a line over the length limit gives 500 and a message over the size limit 552, both
        after the end of the data; what the client pipelined after the end stays in the
        reader for the next command. Any data received restarts the idle timer."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push(DATA_NEEDS_RCPT)
            return
        if arg:
            await self.push(DATA_SYNTAX)
            return
        await self.push(DATA_GO_AHEAD)
        data = await self._read_data()
        if data is None:  # the client went away
            return
        if data is _OVERSIZE:
            reply = DATA_TOO_BIG
        else:
            # de-transparency (RFC 5321 4.5.2); the first line is preceded by the 354
            content = (b"\r\n" + data).replace(b"\r\n.", b"\r\n")[2:]
            # the limit counts a line without its CRLF and without a transparency dot
            # (RFC 5321 4.5.3.1.6)
            if not has_long_line(content, self.line_length):
                self.envelope.content = self.envelope.original_content = content
                status = await self._call_handler_hook("DATA")
                self._set_post_data_state()  # type: ignore[no-untyped-call, unused-ignore]
                if self.guard is not None and status is not MISSING \
                        and str(status).startswith("250"):
                    self.guard.accepted()
                await self.push("250 OK" if status is MISSING else status)
                return
            reply = DATA_LINE_TOO_LONG.format(self.line_length)
        self._set_post_data_state()  # type: ignore[no-untyped-call, unused-ignore]
        await self.push(reply)

    async def _read_data(self) -> bytes | None:
        """The raw data up to and including the CRLF before the ending dot; None at EOF.
        Past the size limit only the end is searched for, what came is dropped, and the
        answer is ``_OVERSIZE``."""
        reader = self._reader
        limit = self.data_size_limit or 0
        buf = bytearray(b"\r\n")  # so that a lone "." as the first line ends the data too
        dropped = 0
        scan = 0
        while True:
            try:
                chunk = await reader.read(_READ_ALL)
            except asyncio.CancelledError:  # the connection was reset during DATA
                self._writer.close()
                raise
            if not chunk:
                return None
            self._reset_timeout()
            buf += chunk
            end = buf.find(_END_OF_DATA, scan)
            if end >= 0:
                rest = bytes(buf[end + len(_END_OF_DATA):])
                if rest and not reader.at_eof():
                    reader.feed_data(rest)  # the buffer is empty: this puts it back in front
                del buf[end + 2:]
                if dropped or (limit and len(buf) - 2 > limit):
                    return _OVERSIZE
                return bytes(memoryview(buf)[2:])
            # buf holds 2 bytes of our own and may end in up to 2 of the ending (".\r")
            if limit and dropped + len(buf) > limit + 4:
                dropped += len(buf) - 4
                del buf[:-4]  # keep what could be the start of the end
            scan = max(0, len(buf) - 4)

    async def smtp_AUTH(self, arg: str) -> None:
        if self.encrypted and self.event_handler.login_paused(self):
            await self.push(AUTH_PAUSED)
            return
        await super().smtp_AUTH(arg)

    # AUTH mechanisms: aiosmtpd's own call a synchronous authenticator; ours await the
    # password check in a thread so one login does not stall every other session.

    async def _authenticate_with(self, login: bytes, password: bytes) -> AuthResult:
        result: AuthResult = await self.event_handler.authenticate(
            self, LoginPassword(login, password))
        return result

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        try:
            _authz, login, password = blob.split(b"\x00")
        except ValueError:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._authenticate_with(login, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if not isinstance(login, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._authenticate_with(login, password)
