"""The aiosmtpd handler: each hook asks policy and routing, and DATA ends in the spool.

    connect  -> policy.connect_reply (quiescent 421, 554 for strangers on mx)
    connect  -> connection limits (postroom.smtp.limits)
    MAIL     -> 452 4.3.1 while the queue's disk is short of queue.min_free (and of a
                declared SIZE=); a source route dropped (RFC 5321 4.1.1.3); submission:
                sender must belong to the login
    RCPT     -> recipient limit, the resolver's verdict (relay tricks and bad syntax
                refused for every client), relaying, policy.rcpt_reply
    DATA     -> bare LF / header size checks, free space again, Received (+ Message-ID,
                Date for submissions), the queue (file and directory fsynced), then 250;
                a full disk (ENOSPC) is 452 4.3.1, with the why in the mail log

The reply 250 is sent only after the queue returned; any failure to queue is a 4xx
(chasquid's contract), so the client keeps the message and retries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from postroom import addresses, maillog
from postroom.errors import QueueError
from postroom.queue import accept, ids
from postroom.queue.space import FreeSpace
from postroom.smtp import policy
from postroom.smtp.auth import Authenticator, FailureLimiter, login_of
from postroom.smtp.limits import ConnectionGate, SessionGuard, Ticket
from postroom.smtp.policy import ClientClass, Networks

if TYPE_CHECKING:
    from postroom.envelope import Envelope
    from postroom.runtime import Reloader
    from postroom.smtp.server import PostroomSMTP

log = logging.getLogger("postroom.smtp")
INSUFFICIENT_STORAGE = "452 4.3.1 Insufficient system storage"
_BARE_LF = re.compile(rb"(?<!\r)\n")


class Handler:
    """Shared by every session of one listener."""

    def __init__(self, *, listener: Any, reloader: Reloader,
                 queue: Callable[[Envelope, bytes], Awaitable[str]],
                 gate: ConnectionGate | None = None) -> None:
        """``queue``: puts a message in the queue, durably, and returns its ID (the
        runner's ``inject``: the first attempt starts at once). ``gate``: the connection
        limits of this process (``postroom.smtp.limits``); without one, none apply."""
        self.listener = listener
        self.gate = gate
        self.tickets: dict[PostroomSMTP, Ticket] = {}
        self.role: str = listener.role
        self.reloader = reloader
        self.queue = queue
        self.sessions: set[PostroomSMTP] = set()
        self.draining = False
        self.space = FreeSpace(str(reloader.current.site.queue_dir))
        self._configure()

    def _configure(self) -> None:
        site = self.reloader.current.site
        p = site.profile
        self.networks = Networks(p.networks.inbound, p.networks.relay)
        old: FailureLimiter | None = getattr(self, "limiter", None)
        if old is not None:
            old.close()
        self.limiter = FailureLimiter(p.limits.auth_failures, p.limits.auth_pause,
                                      site.state_dir / "auth-failures")
        self.authenticator = Authenticator(site)

    def reconfigure(self) -> None:
        """After a reload: new networks and limits (maps come from the reloader)."""
        self._configure()

    @property
    def site(self) -> Any:
        return self.reloader.current.site

    # -- connection ---------------------------------------------------------------------

    def client_of(self, server: PostroomSMTP) -> tuple[str, ClientClass]:
        peer = server.session.peer if server.session else None
        ip = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        return ip, self.networks.classify(ip)

    def connect_reply(self, server: PostroomSMTP) -> str | None:
        ip, cls = self.client_of(server)
        if self.draining:
            return policy.shutdown_reply(self.site.profile.site.hostname)
        p = self.site.profile
        reply = policy.connect_reply(self.role, cls, self.site.quiescent_now(),
                                     p.site.hostname)
        if reply:
            maillog.rejected("CONNECT", f"[{ip}]", reply)
            return reply
        if self.gate is not None:
            admitted = self.gate.admit(self.listener.name, ip, limits=p.limits,
                                       hostname=p.site.hostname,
                                       trusted=cls is not ClientClass.OUTSIDE)
            if isinstance(admitted, str):
                return admitted
            self.tickets[server] = admitted
            if not admitted.exempt:
                server.guard = SessionGuard(p.limits.session_commands,
                                            p.limits.session_errors, p.site.hostname)
        return None

    def opened(self, server: PostroomSMTP) -> None:
        self.sessions.add(server)
        if self.gate is not None:
            server.end_at(self.site.profile.limits.session_time)

    def closed(self, server: PostroomSMTP) -> None:
        self.sessions.discard(server)
        ticket = self.tickets.pop(server, None)
        if ticket is not None and self.gate is not None:
            self.gate.release(ticket)

    def cut(self, server: PostroomSMTP, reply: str) -> None:
        """A session ended by a limit (``reply``, a 421): one line in the mail log."""
        ip, _ = self.client_of(server)
        maillog.rejected("SESSION", self._relay(server) if server.session else f"[{ip}]",
                         reply)

    # -- AUTH -----------------------------------------------------------------------------

    def login_paused(self, server: PostroomSMTP) -> bool:
        return self.limiter.paused(self.client_of(server)[0])

    async def authenticate(self, server: PostroomSMTP, creds: LoginPassword) -> AuthResult:
        ip = self.client_of(server)[0]
        login = creds.login.decode("utf-8", "replace")
        password = creds.password.decode("utf-8", "replace")
        found = await self.authenticator.verify(login, password)
        if found == "ok":
            self.limiter.succeeded(ip)
            return AuthResult(success=True, auth_data=LoginPassword(login.encode(), b""))
        self.limiter.failed(ip)
        why = " (user disabled)" if found == "disabled" else ""
        maillog.rejected("AUTH", f"[{ip}]",
                         f"535 5.7.8 authentication failed for {login!r}{why}")
        return AuthResult(success=False, handled=False)

    # -- hooks ----------------------------------------------------------------------------

    async def handle_EHLO(self, server: PostroomSMTP, session: Session, envelope: SmtpEnvelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        out = [r for r in responses[:-1]
               if not (r.startswith("250-AUTH") and self.role == "mx")]
        out += ["250-PIPELINING", "250-DSN", "250 ENHANCEDSTATUSCODES"]
        return out

    async def handle_HELO(self, server: PostroomSMTP, session: Session, envelope: SmtpEnvelope,
                          hostname: str) -> str:
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server: PostroomSMTP, session: Session, envelope: SmtpEnvelope,
                          address: str, options: list[str]) -> str:
        if self.site.quiescent:
            return policy.quiescent_reply(server.hostname)
        declared = next((int(o[5:]) for o in options
                         if o[:5].upper() == "SIZE=" and o[5:].isdigit()), 0)
        refusal = self._storage_refusal("MAIL", server, declared, sender=address)
        if refusal:
            return refusal
        address = addresses.strip_route(address)
        if self.role != "mx" and session.authenticated:
            login = login_of(session)
            if self.site.profile.smtp.sender_must_match_login:
                owned = await self.authenticator.addresses(login)
                refusal = policy.sender_reply(address, login, owned, must_match=True)
                if refusal:
                    maillog.rejected("MAIL", self._relay(server), refusal, sender=address)
                    return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.dsn = dict(server.mail_dsn)  # type: ignore[attr-defined]
        envelope.routes = []  # type: ignore[attr-defined]
        envelope.rcpt_dsn = []  # type: ignore[attr-defined]
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: PostroomSMTP, session: Session, envelope: SmtpEnvelope,
                          address: str, options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.site.profile.limits.recipients:
            return "452 4.5.3 Error: too many recipients"
        # one judge of the address, as for verify and local submission: the resolver
        resolution = self.reloader.current.resolver.resolve(address)
        _, cls = self.client_of(server)
        reply = policy.rcpt_reply(address, resolution, client=cls,
                                  authenticated=bool(session.authenticated))
        if reply:
            maillog.rejected("RCPT", self._relay(server), reply, sender=envelope.mail_from,
                             rcpt=address)
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        envelope.routes.append(resolution.routes)  # type: ignore[attr-defined]
        envelope.rcpt_dsn.append(dict(server.rcpt_dsn))  # type: ignore[attr-defined]
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: PostroomSMTP, session: Session,
                          envelope: SmtpEnvelope) -> str:
        site = self.site
        p = site.profile
        relay = self._relay(server)
        data: bytes = envelope.original_content or b""
        if self.site.quiescent:
            return policy.quiescent_reply(server.hostname)
        if data.count(b"\n") != data.count(b"\r\n"):
            if p.smtp.forbid_bare_newline:
                reply = "550 5.5.2 Message contains bare <LF>; send <CR><LF> line endings"
                maillog.rejected("DATA", relay, reply, sender=envelope.mail_from)
                return reply
            data = _BARE_LF.sub(b"\r\n", data)
        headers = accept.header_block(data)
        if len(headers) > p.limits.header_size:
            return "552 5.3.4 Message header size exceeds limit"
        refusal = self._storage_refusal("DATA", server, len(data), sender=envelope.mail_from)
        if refusal:
            return refusal
        queue_id = ids.new_id()
        ip, _ = self.client_of(server)
        tls, cipher = server.tls_info
        login = login_of(session)
        # RFC 3848: ESMTPS with TLS, ESMTPA with AUTH, ESMTPSA with both
        proto = "ESMTP" if session.extended_smtp else "SMTP"
        proto += ("S" if tls and session.extended_smtp else "") + ("A" if login else "")
        rcpts = envelope.rcpt_tos
        trace = accept.received_header(
            helo=session.host_name or "", client_name="",  # no reverse lookup: "unknown"
            client_addr=ip, hostname=p.site.hostname, protocol=proto, queue_id=queue_id,
            rcpt=rcpts[0] if len(rcpts) == 1 else None, tls=tls, cipher=cipher,
            auth_user=login)
        if self.role != "mx":
            trace += accept.missing_ids(data, p.site.hostname, queue_id)
        message = trace + data
        dsn = getattr(envelope, "dsn", {})
        recipients = [
            accept.make_recipient(addr, routes, orcpt=params.get("ORCPT"),
                                  notify=params.get("NOTIFY"))
            for addr, routes, params in zip(rcpts, envelope.routes,  # type: ignore[attr-defined]
                                            envelope.rcpt_dsn, strict=True)  # type: ignore
        ]
        env = accept.new_envelope(
            envelope.mail_from if envelope.mail_from not in (None, "<>") else "", recipients,
            id=queue_id, ret=dsn.get("RET"), envid=dsn.get("ENVID"),
            body="8BITMIME" if "BODY=8BITMIME" in envelope.mail_options else None,
            smtputf8=bool(envelope.smtp_utf8), client_addr=ip,
            client_name="", helo=session.host_name or "",
            protocol=proto, auth_user=login, tls=tls, listener=self.listener.name)
        try:
            await self.queue(env, message)
        except QueueError as e:  # ENOSPC among them: the spool undid its writes
            log.error("queue write failed: %s", e)
            maillog.line(f"warning: {queue_id}: queue write failed: {e}")
            return INSUFFICIENT_STORAGE
        except Exception:
            log.exception("queue write failed")
            return "451 4.3.0 Error: queue file write error"
        maillog.accepted(queue_id, env.sender, len(message), len(rcpts), proto, relay,
                         auth=login, tls=tls)
        if self.draining:
            server.loop.call_soon(self._close_after_reply, server)
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def _storage_refusal(self, stage: str, server: PostroomSMTP, need: int, *,
                         sender: str | None) -> str | None:
        """452 4.3.1 (logged with the figures) while the queue's disk is short of
        queue.min_free after ``need`` more bytes; None otherwise."""
        why = self.space.shortage(self.site.profile.queue.min_free, need)
        if why is None:
            return None
        maillog.rejected(stage, self._relay(server), f"{INSUFFICIENT_STORAGE} ({why})",
                         sender=sender)
        return INSUFFICIENT_STORAGE

    def _close_after_reply(self, server: PostroomSMTP) -> None:
        if server.transport is not None:
            server.transport.close()

    def _relay(self, server: PostroomSMTP) -> str:
        ip, _ = self.client_of(server)
        name = server.session.host_name if server.session else ""
        return maillog.relay_text(name or "unknown", ip)
