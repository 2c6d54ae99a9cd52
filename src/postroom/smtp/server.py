"""The SMTP protocol: aiosmtpd's engine with the few things a public MTA needs on top.

- a connect-time verdict (quiescent 421, 554 for clients the listener does not serve),
- RFC 3461 DSN parameters (RET, ENVID on MAIL; NOTIFY, ORCPT on RCPT), which aiosmtpd
  would refuse with 555,
- enhanced status codes (RFC 2034) on every reply aiosmtpd writes without one,
- AUTH PLAIN / LOGIN checked asynchronously, with a per-client failure limit,
- a 421 on idle timeout instead of a silent close, and a drain mode for SIGTERM,
- DATA read in blocks rather than a line at a time (see ``smtp_DATA``).

Policy stays in ``handler``; this module only speaks the protocol.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import logging
import re
import ssl
from typing import Any

import aiosmtpd.smtp
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\b")
_DEFAULT_ENHANCED = {
    "250": "2.0.0", "221": "2.0.0", "251": "2.1.5", "252": "2.5.0",
    "421": "4.3.0", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0",
    "555": "5.5.4",
}
# aiosmtpd's texts, reworded where a client or an admin deserves a better one
_REWORD = {
    "552 Error: Too much mail data": "552 5.3.4 Message size exceeds fixed limit",
    "552 Error: message size exceeds fixed maximum message size":
        "552 5.3.4 Message size exceeds fixed limit",
    "500 Line too long (see RFC5321 4.5.3.1.6)":
        "500 5.5.2 Line too long (limit is 998 characters, RFC 5321 4.5.3.1.6)",
}
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


class _MemberCache:
    """Stands in for the ``inspect`` module inside aiosmtpd.smtp.

    aiosmtpd's ``SMTP.__init__`` calls ``inspect.getmembers`` on the protocol and on the
    handler for every connection, only to find the ``auth_*`` methods: about a third of a
    millisecond per connection, per message with one message per connection. The names
    depend only on the class, so they are computed once per class here."""

    _names: dict[type, list[str]] = {}

    @classmethod
    def getmembers(cls, obj: Any) -> list[tuple[str, Any]]:
        names = cls._names.get(type(obj))
        if names is None:
            names = cls._names[type(obj)] = [n for n in dir(obj) if n.startswith("auth_")]
        return [(n, getattr(obj, n)) for n in names]

    _signatures: dict[Any, inspect.Signature] = {}

    @classmethod
    def signature(cls, func: Any) -> inspect.Signature:
        key = getattr(func, "__func__", func)
        sig = cls._signatures.get(key)
        if sig is None:
            sig = cls._signatures[key] = inspect.signature(func)
        return sig


_dir_cache: dict[type, list[str]] = {}


def _class_dir(obj: Any) -> list[str]:
    """``dir()`` for aiosmtpd's per-connection scans of ``smtp_*`` and ``handle_*``
    methods (its only uses of ``dir``), which are class attributes: computed once per
    class, and only those names."""
    names = _dir_cache.get(type(obj))
    if names is None:
        names = _dir_cache[type(obj)] = [
            n for n in dir(obj) if n.startswith(("smtp_", "handle_"))]
    return names


def _sanitized_log(func: Any, msg: str, *args: Any, **kwargs: Any) -> None:
    """aiosmtpd's ``sanitized_log``, which masks AUTH secrets in logged command lines;
    here it first asks whether the line would be logged at all (it is called for every
    command)."""
    logger = getattr(func, "__self__", None)
    level = logging.DEBUG if getattr(func, "__name__", "") == "debug" else logging.INFO
    if logger is None or logger.isEnabledFor(level):
        _aiosmtpd_sanitized_log(func, msg, *args, **kwargs)


_aiosmtpd_sanitized_log = aiosmtpd.smtp.sanitized_log
aiosmtpd.smtp.inspect = _MemberCache  # type: ignore[attr-defined]
aiosmtpd.smtp.dir = _class_dir  # type: ignore[attr-defined]  # shadows the builtin there
aiosmtpd.smtp.sanitized_log = _sanitized_log


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


class PostroomSMTP(SMTP):
    """One SMTP session. ``handler`` is a ``postroom.smtp.handler.Handler``."""

    def __init__(self, handler: Any, *, implicit_tls: bool = False, line_length: int = 998,
                 **kwargs: Any) -> None:
        # aiosmtpd sizes its stream reader from this class attribute; per instance here
        self.line_length_limit = line_length + 2
        self.line_length = line_length
        super().__init__(handler, **kwargs)
        self.implicit_tls = implicit_tls
        self._ehlo_lines: list[bytes] | None = None
        self.mail_dsn: dict[str, str] = {}
        self.rcpt_dsn: dict[str, Any] = {}

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

    @property
    def encrypted(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

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

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n"
                                 .encode())
        super()._timeout_cb()

    async def push(self, status: str | bytes) -> None:
        if self._ehlo_lines is not None:  # the EHLO reply goes out in one write
            line = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") \
                if isinstance(status, str) else status
            self._ehlo_lines.append(line + b"\r\n")
            return
        if isinstance(status, str):
            status = _REWORD.get(status, status)
            code, text = status[:3], status[4:]
            if (status[3:4] == " " and code in _DEFAULT_ENHANCED
                    and not _ENHANCED.match(text)):
                status = f"{code} {_DEFAULT_ENHANCED[code]} {text}"
        await super().push(status)

    # -- commands -------------------------------------------------------------------------

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        m = _SIMPLE_PATH.match(arg)
        if m is None or ".." in m.group(1):
            return super()._getaddr(arg)  # quoting, comments, literals, UTF-8, null path
        address = m.group(1)
        if self.local_part_limit and address.rfind("@") > self.local_part_limit:
            return None, None
        return address, m.group(2).lstrip(" \t")

    async def smtp_EHLO(self, hostname: str) -> None:
        self._ehlo_lines = []
        try:
            await super().smtp_EHLO(hostname)
        finally:
            lines, self._ehlo_lines = self._ehlo_lines, None
        self._writer.write(b"".join(lines))
        await self._writer.drain()

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
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = await self._read_data()
        if data is None:  # the client went away
            return
        if data is _OVERSIZE:
            reply = "552 Error: Too much mail data"
        else:
            # de-transparency (RFC 5321 4.5.2); the first line is preceded by the 354
            content = (b"\r\n" + data).replace(b"\r\n.", b"\r\n")[2:]
            # the limit counts a line without its CRLF and without a transparency dot
            # (RFC 5321 4.5.3.1.6)
            if not has_long_line(content, self.line_length):
                self.envelope.content = self.envelope.original_content = content
                status = await self._call_handler_hook("DATA")
                self._set_post_data_state()
                await self.push("250 OK" if status is aiosmtpd.smtp.MISSING else status)
                return
            reply = "500 Line too long (see RFC5321 4.5.3.1.6)"
        self._set_post_data_state()
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
            await self.push("454 4.7.0 Too many failed authentication attempts; "
                            "try again later")
            return
        await super().smtp_AUTH(arg)

    # AUTH mechanisms: aiosmtpd's own call a synchronous authenticator; ours await the
    # password check in a thread so one login does not stall every other session.

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
        return await self.event_handler.authenticate(self, LoginPassword(login, password))

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
        return await self.event_handler.authenticate(self, LoginPassword(login, password))
