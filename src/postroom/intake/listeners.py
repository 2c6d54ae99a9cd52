"""The SMTP listeners of one intake process: every listener of the profile on
already-bound sockets, in one event loop (uvloop). ``postroom serve`` runs two of these
per core on shared sockets, so the kernel spreads connections across processes and both
cores take mail.

Each connection is built from the runtime in force when it arrives (message size, line
length, idle timeout) and admitted by the process's ``ConnectionGate`` (connection
limits, ``postroom.smtp.limits``: counted with the other intake processes of the server);
at start the process's file descriptor limit is raised to its hard limit. The TLS
contexts are kept and their certificate loaded again on reload, so the next handshake
uses a renewed certificate. Draining stops listening, closes idle sessions with 421, and
lets open transactions finish.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from postroom import maillog
from postroom.errors import ConfigError
from postroom.runner import QueueRunner
from postroom.runtime import Reloader
from postroom.site import Listener, Site
from postroom.smtp.adapter import check_aiosmtpd
from postroom.smtp.handler import Handler
from postroom.smtp.limits import ConnectionGate, raise_fd_limit
from postroom.smtp.server import PostroomSMTP
from postroom.smtp.tls import reload_certificate, server_context

log = logging.getLogger("postroom.intake")
DRAIN_SECONDS = 30.0
# connections the kernel completes before a process accepts them; create_server would
# otherwise listen() again with its default of 100, and a burst of clients past that waits
# for a SYN retransmission (1 s, then 3 s)
LISTEN_BACKLOG = 1024


def bind(listener: Listener) -> socket.socket:
    """A listening socket for one listener (port 0 picks a free port)."""
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listener.address, listener.port))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def tls_contexts(site: Site) -> dict[str, Any]:
    """One server context per role; a missing cert is an error only where TLS is required."""
    roles = {lst.role for lst in site.profile.listeners}
    needed = bool(roles & {"submission", "submissions"})
    ctx = server_context(site, required=needed) if roles else None
    return {"ctx": ctx}


@dataclass
class Intake:
    reloader: Reloader
    sockets: list[tuple[Listener, socket.socket]]
    runner: QueueRunner
    handlers: list[Handler] = field(default_factory=list)
    servers: list[asyncio.Server] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    ctx: Any = None
    gate: ConnectionGate | None = None

    async def start(self) -> None:
        check_aiosmtpd()  # a wrong aiosmtpd stops start-up, not each connection
        site = self.reloader.current.site
        self.ctx = tls_contexts(site)["ctx"]
        before, after = raise_fd_limit()
        self.gate = ConnectionGate(site.state_dir)
        if after != before:
            log.info("file descriptor limit raised from %d to %d", before, after)
        if not self.gate.table.shared:
            maillog.event("warning: connection limits are counted in each intake process "
                          "alone (state/connections cannot be used; see the error log)")
        loop = asyncio.get_running_loop()
        for listener, sock in self.sockets:
            handler = Handler(listener=listener, reloader=self.reloader,
                              queue=self.runner.inject, gate=self.gate)
            self.handlers.append(handler)
            implicit = listener.role == "submissions"
            server = await loop.create_server(
                functools.partial(self._session, handler), sock=sock, backlog=LISTEN_BACKLOG,
                ssl=self.ctx if implicit else None,
                ssl_handshake_timeout=30 if implicit else None)
            self.servers.append(server)

    def _session(self, handler: Handler) -> PostroomSMTP:
        """A new connection, with the limits of the runtime in force now."""
        p = self.reloader.current.site.profile
        role = handler.role
        return PostroomSMTP(
            handler, hostname=p.site.hostname, ident="postroom",
            data_size_limit=p.limits.message_size, enable_SMTPUTF8=True,
            decode_data=False, timeout=p.limits.idle_timeout,
            line_length=p.limits.line_length,
            auth_required=role != "mx", auth_require_tls=role != "submissions",
            tls_context=self.ctx if role != "submissions" else None,
            require_starttls=role == "submission",
            implicit_tls=role == "submissions", loop=asyncio.get_running_loop())

    def reconfigure(self) -> None:
        """After a reload: networks and limits of each listener, and the certificate."""
        for h in self.handlers:
            h.reconfigure()
        if self.ctx is not None:
            try:
                reload_certificate(self.ctx, self.reloader.current.site)
            except ConfigError as e:
                log.error("%s", e)
                maillog.event(f"reload: {e}")

    async def drain(self, seconds: float = DRAIN_SECONDS) -> None:
        """Greet new connections with 421, close idle sessions with 421, let open
        transactions finish, then stop listening. The listeners stay open until then: a
        closed one leaves new clients in the kernel's queue of the socket the other
        processes still hold, to be dropped later without a word."""
        if self.stopped.is_set():
            return
        for h in self.handlers:
            h.draining = True  # Handler.connect_reply: 421 4.3.2 <host> Service shutting down
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            busy = False
            for h in self.handlers:
                for session in list(h.sessions):
                    if not session.close_if_idle():
                        busy = True
            if not busy and not any(h.sessions for h in self.handlers):
                break
            await asyncio.sleep(0.05)
        for s in self.servers:
            s.close()
        self.stopped.set()

    async def wait(self) -> None:
        await self.stopped.wait()
