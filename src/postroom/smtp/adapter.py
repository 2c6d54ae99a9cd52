"""aiosmtpd 1.4.6 made to fit postroom, in one place: ``AdaptedSMTP``, the base class of
``postroom.smtp.server.PostroomSMTP``.

Every adjustment is a method of this subclass. Nothing here patches the ``aiosmtpd.smtp``
module, so any other aiosmtpd server in the same process (the tests' sinks, for one) runs
aiosmtpd exactly as shipped. What is adjusted, and why:

- ``__init__`` does what ``SMTP.__init__`` does, except that the tables of ``smtp_*``
  verbs, ``handle_*`` hooks and ``auth_*`` mechanisms come from ``postroom.smtp.scans``,
  found once per class (aiosmtpd scans the protocol and the handler on every
  connection). So a hook or a mechanism must be a method of the class; one set on an
  instance is not seen.
- With implicit TLS (port 465) the session is encrypted before its first command.
  aiosmtpd only knows STARTTLS: it would hide AUTH from EHLO and refuse it with 538. It
  would also warn that "AUTH without TLS" is a risk. Here ``encrypted`` covers both kinds
  of TLS.
- ``smtp_AUTH`` is aiosmtpd's, except that the login is kept in ``session.auth_data``
  only. aiosmtpd's ``Session.login_data`` is deprecated, and it logs a warning each time
  it is set or read; ``postroom.smtp.auth.login_of`` reads ``auth_data``.
- ``push`` adds an enhanced status code (RFC 2034) to the replies aiosmtpd writes without
  one, and rewords the replies listed in ``REWORD``.
- ``smtp_EHLO`` sends its reply in one write, not one per line.
- ``_timeout_cb`` sends ``421 4.4.2`` before closing an idle session; aiosmtpd closes it
  without a word.
- ``line_length`` sets the reader's line limit for each instance. aiosmtpd reads it from
  a class attribute.
- A session keeps its state in ``__slots__``, and its tables of verbs and hooks are views
  that bind a method when it is looked up: aiosmtpd's instance holds a dict of some 55
  attributes and dicts of bound methods, which were most of what an idle connection
  costs. The tables of verbs, hooks and mechanisms are found once per class; an
  ``asyncio`` writer's list of drain waiters is made when a write first has to wait.

``check_aiosmtpd`` refuses any aiosmtpd version other than ``SUPPORTED_AIOSMTPD``.
``AdaptedSMTP`` calls it for every session; call it at start-up as well, so that a wrong
version stops the server at once instead of failing on the first connection.
``tests/smtp/test_aiosmtpd_contract.py`` fails when aiosmtpd code or a reply text that
this module copies or relies on changes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import socket
import ssl
from collections.abc import Iterable, Mapping
from typing import Any
from warnings import warn

import aiosmtpd
import aiosmtpd.smtp
from aiosmtpd.smtp import (
    CALL_LIMIT_DEFAULT,
    DATA_SIZE_DEFAULT,
    MISSING,
    SMTP,
    AuthCallbackType,
    AuthenticatorType,
    AuthResult,
    TLSSetupException,
    is_int,
    login_always_fail,
    make_loop,
)

from postroom.errors import PostroomError
from postroom.smtp.scans import BoundMethods, check_ehlo_hook, mechanisms_of

SUPPORTED_AIOSMTPD = "1.4.6"

log = logging.getLogger("mail.log")  # aiosmtpd's logger: its messages, as it logs them

# Replies aiosmtpd writes, in its wording (the contract test checks these texts)
AUTH_SUCCESS = "235 2.7.0 Authentication successful"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_NEEDS_TLS = "538 5.7.11 Encryption required for requested authentication mechanism"
MAIL_TOO_BIG = "552 Error: message size exceeds fixed maximum message size"

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\b")
DEFAULT_ENHANCED = {
    "250": "2.0.0", "221": "2.0.0", "251": "2.1.5", "252": "2.5.0",
    "421": "4.3.0", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0",
    "555": "5.5.4",
}
# aiosmtpd's texts, reworded where a client or an admin deserves a better one
REWORD = {
    MAIL_TOO_BIG: "552 5.3.4 Message size exceeds fixed limit",
}


class UnsupportedAiosmtpd(PostroomError):
    """The installed aiosmtpd is not the version the adapter was written for."""


def check_aiosmtpd() -> None:
    """Raise ``UnsupportedAiosmtpd`` unless aiosmtpd is the version this module adapts."""
    found = aiosmtpd.__version__
    if found != SUPPORTED_AIOSMTPD:
        raise UnsupportedAiosmtpd(
            f"postroom's SMTP server supports aiosmtpd {SUPPORTED_AIOSMTPD} only, and "
            f"aiosmtpd {found} is installed (fix: install aiosmtpd=={SUPPORTED_AIOSMTPD}; "
            "a new version needs postroom/smtp/adapter.py checked against it, with "
            "tests/smtp/test_aiosmtpd_contract.py)")


_UNSAFE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class AdaptedSMTP(SMTP):
    """aiosmtpd's SMTP with the adjustments in the module docstring."""

    # what asyncio's StreamReaderProtocol, aiosmtpd's SMTP and this adapter set on a
    # session (a name missing here lands in a per-instance dict, which the contract test
    # tests/smtp/test_aiosmtpd_contract.py catches)
    __slots__ = (
        "__ident__", "_auth_callback", "_auth_methods", "_auth_require_tls",
        "_auth_required", "_authenticator", "_call_limit_base", "_call_limit_default",
        "_client_connected_cb", "_closed", "_connection_lost", "_decode_data",
        "_drain_waiters", "_ehlo_hook_ver", "_ehlo_lines", "_enforce_call_limit",
        "_handler_coroutine", "_loop", "_original_transport", "_over_ssl", "_paused",
        "_proxy_timeout", "_reader", "_reject_connection", "_source_traceback",
        "_stream_reader_wr", "_stream_writer", "_strong_reader", "_task",
        "_timeout_duration", "_timeout_handle", "_tls_handshake_okay", "_tls_protocol",
        "_transport", "_writer", "data_size_limit", "enable_SMTPUTF8", "envelope",
        "event_handler", "hostname", "implicit_tls", "line_length_limit", "loop",
        "require_starttls", "session", "tls_context", "transport",
    )
    _paused: bool  # asyncio's FlowControlMixin: a write waits for a drain

    def __init__(self, handler: Any, *,
                 data_size_limit: int | None = DATA_SIZE_DEFAULT,
                 enable_SMTPUTF8: bool = False,
                 decode_data: bool = False,
                 hostname: str | None = None,
                 ident: str | None = None,
                 tls_context: ssl.SSLContext | None = None,
                 require_starttls: bool = False,
                 timeout: float = 300,
                 auth_required: bool = False,
                 auth_require_tls: bool = True,
                 auth_exclude_mechanism: Iterable[str] | None = None,
                 auth_callback: AuthCallbackType | None = None,
                 command_call_limit: int | dict[str, int] | None = None,
                 authenticator: AuthenticatorType | None = None,
                 proxy_protocol_timeout: float | None = None,
                 loop: asyncio.AbstractEventLoop | None = None,
                 implicit_tls: bool = False,
                 line_length: int = 998) -> None:
        # aiosmtpd 1.4.6's SMTP.__init__, statement for statement, but for the scans (see
        # the module docstring) and for implicit TLS, which counts as TLS
        check_aiosmtpd()
        self.implicit_tls = implicit_tls
        self.line_length_limit = line_length + 2  # CRLF (aiosmtpd: + a transparency dot)
        self._ehlo_lines: list[bytes] | None = None
        self.__ident__ = ident or aiosmtpd.smtp.__ident__
        self.loop = loop if loop else make_loop()
        super(SMTP, self).__init__(
            asyncio.StreamReader(loop=self.loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=self.loop)
        self._drain_waiters: Any = ()  # see _drain_helper
        self.event_handler = handler
        assert data_size_limit is None or isinstance(data_size_limit, int)
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.command_size_limits.clear()
        self.hostname = hostname if hostname else socket.getfqdn()
        self.tls_context = tls_context
        if tls_context:
            if tls_context.verify_mode not in {ssl.CERT_NONE, ssl.CERT_OPTIONAL}:
                log.warning("tls_context.verify_mode not in {CERT_NONE, "
                            "CERT_OPTIONAL}; this might cause client "
                            "connection problems")
            elif tls_context.check_hostname:
                log.warning("tls_context.check_hostname == True; "
                            "this might cause client connection problems")
        self.require_starttls = tls_context and require_starttls
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        if not auth_require_tls and auth_required and not implicit_tls:
            warn("Requiring AUTH while not requiring TLS "
                 "can lead to security vulnerabilities!", stacklevel=2)
            log.warning("auth_required == True but auth_require_tls == False")
        # aiosmtpd reads this as "AUTH must wait for STARTTLS" (EHLO's AUTH line, AUTH's
        # 538): never so when the whole connection is TLS
        self._auth_require_tls = auth_require_tls and not implicit_tls

        if proxy_protocol_timeout is not None:
            if proxy_protocol_timeout <= 0:
                raise ValueError("proxy_protocol_timeout must be > 0")
            elif proxy_protocol_timeout < 3.0:
                log.warning("proxy_protocol_timeout < 3.0")
        self._proxy_timeout = proxy_protocol_timeout

        if authenticator is not None:
            self._authenticator = authenticator
            self._auth_callback = None
        else:
            self._auth_callback = auth_callback or login_always_fail
            self._authenticator = None

        self._auth_required = auth_required

        self._auth_methods = mechanisms_of(type(self), type(handler),
                                           tuple(auth_exclude_mechanism or ()))
        if log.isEnabledFor(logging.INFO):
            log.info("Available AUTH mechanisms: " + " ".join(
                m + "(builtin)" if impl.is_builtin else m
                for m, impl in sorted(self._auth_methods.items())))
        # aiosmtpd also takes a deprecated 4-argument handle_EHLO; the adapter takes the
        # 5-argument one only
        ehlo_hook = self._handle_hooks.get("EHLO")
        if ehlo_hook is None:
            self._ehlo_hook_ver = None
        else:
            check_ehlo_hook(type(handler), ehlo_hook)
            self._ehlo_hook_ver = "new"

        if command_call_limit is None:
            self._enforce_call_limit = False
        else:
            self._enforce_call_limit = True
            if isinstance(command_call_limit, int):
                self._call_limit_base = {}
                self._call_limit_default = command_call_limit
            elif isinstance(command_call_limit, dict):
                if not all(map(is_int, command_call_limit.values())):
                    raise TypeError("All command_call_limit values must be int")
                self._call_limit_base = command_call_limit
                self._call_limit_default = command_call_limit.get(
                    "*", CALL_LIMIT_DEFAULT)
            else:
                raise TypeError("command_call_limit must be int or Dict[str, int]")

    @property
    def _handle_hooks(self) -> Mapping[str, Any]:  # type: ignore[override]
        return BoundMethods(self.event_handler, "handle_")

    @property
    def _smtp_methods(self) -> Mapping[str, Any]:  # type: ignore[override]
        return BoundMethods(self, "smtp_")

    async def _drain_helper(self) -> None:
        # asyncio makes each protocol an empty deque of drain waiters (600 bytes); most
        # sessions never wait for a drain (every write calls this; only a paused one waits)
        if self._paused and not isinstance(self._drain_waiters, collections.deque):
            self._drain_waiters = collections.deque()
        await super()._drain_helper()  # type: ignore[misc]

    @property
    def encrypted(self) -> bool:
        """TLS from the start (implicit) or after STARTTLS."""
        return self.implicit_tls or self._tls_protocol is not None

    async def push(self, status: str | bytes) -> None:
        if self._ehlo_lines is not None:  # the EHLO reply goes out in one write
            line = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") \
                if isinstance(status, str) else status
            self._ehlo_lines.append(line + b"\r\n")
            return
        if isinstance(status, bytes):
            await super().push(status)
            return
        # a client's bytes echoed in a reply (8-bit as surrogate escapes, a bare CR) must
        # not break the reply line
        status = _UNSAFE.sub("?", REWORD.get(status, status))
        code, text = status[:3], status[4:]
        if status[3:4] == " " and code in DEFAULT_ENHANCED and not _ENHANCED.match(text):
            status = f"{code} {DEFAULT_ENHANCED[code]} {text}"
        await super().push(status)

    async def handle_exception(self, error: Exception) -> str:
        """A client whose TLS handshake fails is one log line, not a traceback (any client
        could fill the log); aiosmtpd then closes the connection. Anything else is a bug:
        logged with its traceback, and the client gets a generic temporary error, never
        the exception's text."""
        peer = self.session.peer if self.session else None
        if isinstance(error, TLSSetupException):
            log.info("%r TLS handshake failed: %s", peer, error.__cause__ or error)
            return "421 4.7.0 TLS handshake failed"
        log.exception("%r SMTP session exception", peer)
        return "451 4.3.0 Error: internal error; try again later"

    async def smtp_EHLO(self, hostname: str) -> None:
        self._ehlo_lines = []
        try:
            await super().smtp_EHLO(hostname)
        finally:
            lines, self._ehlo_lines = self._ehlo_lines, None
        self._writer.write(b"".join(lines))
        await self._writer.drain()

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n"
                               .encode())
        super()._timeout_cb()  # type: ignore[no-untyped-call, unused-ignore]

    async def smtp_AUTH(self, arg: str) -> None:
        # aiosmtpd 1.4.6's smtp_AUTH, but for implicit TLS (``encrypted``), no
        # Session.login_data, and no mechanisms of its older protocol (a mechanism here
        # returns an AuthResult, or None when it has replied itself)
        if await self.check_helo_needed("EHLO"):
            return
        assert self.session is not None
        if not self.session.extended_smtp:
            await self.push("500 Error: command 'AUTH' not recognized")
            return
        elif self._auth_require_tls and not self.encrypted:
            await self.push(AUTH_NEEDS_TLS)
            return
        elif self.session.authenticated:
            await self.push("503 Already authenticated")
            return
        elif not arg:
            await self.push("501 Not enough value")
            return

        args = arg.split()
        if len(args) > 2:
            await self.push("501 Too many values")
            return

        mechanism = args[0]
        if mechanism not in self._auth_methods:
            await self.push("504 5.5.4 Unrecognized authentication type")
            return

        status = await self._call_handler_hook("AUTH", args)
        if status is MISSING:
            impl: Any = self._auth_methods[mechanism]
            owner = self if impl.is_builtin else self.event_handler
            result = await impl.method(owner, self, args)
            if result is None:
                status = None
            elif not isinstance(result, AuthResult):
                raise TypeError(f"AUTH {mechanism} returned {type(result).__name__}, "
                                "not an AuthResult")
            elif result.success:
                self.session.authenticated = True
                self.session.auth_data = result.auth_data
                status = result.message or AUTH_SUCCESS
            elif result.handled:
                status = None
            else:
                status = result.message or AUTH_INVALID
        if status is not None:
            await self.push(status)
