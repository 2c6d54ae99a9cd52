"""A scripted SMTP sink for tests: a real aiosmtpd server on 127.0.0.1 (port 0 by default)
running in the test's event loop, standing in for a remote MTA (Mailman's
``ConnectionCountingController``, chasquid's ``fakeserver``).

    sink = await Sink(reject_rcpt={"nobody@example.test"}).start()
    ... deliver to 127.0.0.1:sink.port ...
    assert sink.messages[0].rcpt_tos == [...]
    await sink.stop()

Script knobs (all may be changed while it runs):

- ``tempfail_rcpt=N``: the first N RCPT commands get ``451 4.3.0``, later ones are taken;
- ``reject_rcpt``: addresses whose RCPT gets ``550 5.1.1``;
- ``data_reply``: the reply after the message body instead of 250 (e.g. ``554 5.6.0 ...``);
- ``next_replies``: per verb (``MAIL``, ``RCPT``, ``DATA``), replies used once each, in order;
- ``drop_in_data``: after 354, read a few lines of the message and close the connection;
- ``tls``: an ``ssl.SSLContext`` to offer STARTTLS with (see ``server_tls`` for trustme);
- ``users``: ``{login: password}`` to offer AUTH (over TLS only) and require it;
- ``dsn``: advertise DSN and record RET/ENVID/NOTIFY/ORCPT; ``smtputf8``: advertise it.

Recorded: ``connections``, ``transactions`` (MAIL commands taken), ``quits``, ``messages`` (each a
``Received`` with envelope, options, content, TLS and login), ``partial`` (bytes read before
a drop).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

_MAIL_DSN = re.compile(r"\s+(RET|ENVID)=(\S+)", re.IGNORECASE)
_RCPT_DSN = re.compile(r"\s+(NOTIFY|ORCPT)=(\S+)", re.IGNORECASE)


def server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """A server context with a trustme certificate for ``names`` (default 127.0.0.1)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(ctx)
    return ctx


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    dsn: dict[str, str] = field(default_factory=dict)
    rcpt_dsn: dict[str, dict[str, str]] = field(default_factory=dict)
    tls: bool = False
    login: str = ""
    helo: str = ""


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP plus DSN parameters, connection counting and a mid-DATA drop."""

    def __init__(self, sink: Sink, **kwargs: Any) -> None:
        super().__init__(sink, **kwargs)
        self.sink = sink
        self.mail_dsn: dict[str, str] = {}
        self.rcpt_dsn: dict[str, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the STARTTLS re-wrap
            self.sink.connections += 1
        super().connection_made(transport)

    async def smtp_MAIL(self, arg: str | None) -> None:
        self.mail_dsn = {}
        if arg and self.sink.dsn:
            def take(m: re.Match[str]) -> str:
                self.mail_dsn[m.group(1).upper()] = m.group(2)
                return ""
            arg = _MAIL_DSN.sub(take, arg)
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        self.rcpt_dsn = {}
        if arg and self.sink.dsn:
            def take(m: re.Match[str]) -> str:
                self.rcpt_dsn[m.group(1).upper()] = m.group(2)
                return ""
            arg = _RCPT_DSN.sub(take, arg)
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if not (self.sink.drop_in_data and self.envelope and self.envelope.rcpt_tos):
            await super().smtp_DATA(arg)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        got = b""
        for _ in range(3):
            got += await self._reader.readline()
        self.sink.partial.append(got)
        assert self.transport is not None
        self.transport.close()


PIPELINING_DEFAULT = [False]  # tests/delivery run every sink test both ways


class Sink:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 tls: ssl.SSLContext | None = None, users: dict[str, str] | None = None,
                 dsn: bool = True, smtputf8: bool = True, size: int | None = 33554432,
                 tempfail_rcpt: int = 0, reject_rcpt: set[str] | None = None,
                 data_reply: str | None = None, drop_in_data: bool = False,
                 pipelining: bool | None = None) -> None:
        self.host, self.port = host, port
        self.tls, self.users, self.dsn, self.smtputf8, self.size = tls, users, dsn, smtputf8, size
        self.tempfail_rcpt = tempfail_rcpt
        self.reject_rcpt = set(reject_rcpt or ())
        self.data_reply = data_reply
        self.drop_in_data = drop_in_data
        # offer PIPELINING (aiosmtpd reads pipelined commands either way); None: the default
        self.pipelining = PIPELINING_DEFAULT[0] if pipelining is None else pipelining
        self.next_replies: dict[str, list[str]] = {}
        self.connections = 0
        self.transactions = 0
        self.rcpt_commands = 0
        self.quits = 0
        self.rsets = 0
        self.messages: list[Received] = []
        self.partial: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._protocols: list[_SinkSMTP] = []

    # -- lifecycle --------------------------------------------------------------------------

    def _factory(self) -> _SinkSMTP:
        kwargs: dict[str, Any] = dict(
            hostname="sink.test", data_size_limit=self.size, enable_SMTPUTF8=self.smtputf8,
            tls_context=self.tls, timeout=30)
        if self.users is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=True)
        protocol = _SinkSMTP(self, **kwargs)
        self._protocols.append(protocol)
        return protocol

    async def start(self) -> Sink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for p in self._protocols:
            if p.transport is not None:
                p.transport.close()
        await asyncio.sleep(0)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Sink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- aiosmtpd hooks ---------------------------------------------------------------------

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.users is not None:
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(login) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def _scripted(self, verb: str) -> str | None:
        queue = self.next_replies.get(verb)
        return queue.pop(0) if queue else None

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.dsn:
            responses.insert(-1, "250-DSN")
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 2.0.0 Bye"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.rsets += 1
        return "250 2.0.0 Ok"

    async def handle_MAIL(self, server: _SinkSMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        reply = self._scripted("MAIL")
        if reply:
            return reply
        self.transactions += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.dsn = dict(server.mail_dsn)  # type: ignore[attr-defined]
        envelope.rcpt_dsn = {}  # type: ignore[attr-defined]
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: _SinkSMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        self.rcpt_commands += 1
        reply = self._scripted("RCPT")
        if reply:
            return reply
        if self.rcpt_commands <= self.tempfail_rcpt:
            return "451 4.3.0 Try again later"
        if address in self.reject_rcpt:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_dsn[address] = dict(server.rcpt_dsn)  # type: ignore[attr-defined]
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._scripted("DATA") or self.data_reply
        if reply:
            return reply
        content = envelope.original_content or b""
        auth = session.auth_data
        self.messages.append(Received(
            mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos),
            content=content, mail_options=list(envelope.mail_options),
            dsn=getattr(envelope, "dsn", {}), rcpt_dsn=getattr(envelope, "rcpt_dsn", {}),
            tls=session.ssl is not None,
            login=auth.login.decode() if isinstance(auth, LoginPassword) else "",
            helo=session.host_name or ""))
        return f"250 2.0.0 Ok: queued as M{len(self.messages)}"
