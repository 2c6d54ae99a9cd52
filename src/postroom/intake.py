"""One intake process: every listener of the profile on already-bound sockets, in one
event loop (uvloop). ``postroom serve`` runs two of these per core on shared sockets, so
the kernel spreads connections across processes and both cores take mail.

Signals: SIGHUP reloads the profile and maps (last good wins); SIGTERM/SIGINT drain:
stop listening, close idle sessions with 421, let open transactions finish, exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from postroom import maillog
from postroom.runtime import Reloader
from postroom.site import Listener, Site

log = logging.getLogger("postroom.intake")
DRAIN_SECONDS = 30.0


def bind(listener: Listener) -> socket.socket:
    """A listening socket for one listener (port 0 picks a free port)."""
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listener.address, listener.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def tls_contexts(site: Site) -> dict[str, Any]:
    """One server context per role; a missing cert is an error only where TLS is required."""
    from postroom.smtp.tls import server_context

    roles = {lst.role for lst in site.profile.listeners}
    needed = bool(roles & {"submission", "submissions"})
    ctx = server_context(site, required=needed) if roles else None
    return {"ctx": ctx}


@dataclass
class Intake:
    reloader: Reloader
    sockets: list[tuple[Listener, socket.socket]]
    on_queued: Callable[[Any, bytes], None] | None = None
    handlers: list[Any] = field(default_factory=list)
    servers: list[asyncio.Server] = field(default_factory=list)
    spool: Any = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _own_spool: bool = False

    async def start(self) -> None:
        from postroom.queue.spool import Spool
        from postroom.smtp.handler import Handler
        from postroom.smtp.server import PostroomSMTP

        site = self.reloader.current.site
        p = site.profile
        ctx = tls_contexts(site)["ctx"]
        if self.spool is None:  # else the delivery side's spool, shared
            self.spool = Spool(site.queue_dir)
            self._own_spool = True
        loop = asyncio.get_running_loop()
        for listener, sock in self.sockets:
            handler = Handler(listener=listener, reloader=self.reloader, spool=self.spool,
                              on_queued=self.on_queued)
            self.handlers.append(handler)
            role = listener.role
            kwargs: dict[str, Any] = dict(
                hostname=p.site.hostname, ident="postroom",
                data_size_limit=p.limits.message_size, enable_SMTPUTF8=True,
                decode_data=False, timeout=p.limits.idle_timeout,
                line_length=p.limits.line_length,
                auth_required=role != "mx", auth_require_tls=role != "submissions",
                tls_context=ctx if role != "submissions" else None,
                require_starttls=role == "submission",
                implicit_tls=role == "submissions", loop=loop,
            )

            def factory(handler: Any = handler, kwargs: dict[str, Any] = kwargs) -> Any:
                return PostroomSMTP(handler, **kwargs)

            server = await loop.create_server(
                factory, sock=sock, ssl=ctx if role == "submissions" else None,
                ssl_handshake_timeout=30 if role == "submissions" else None)
            self.servers.append(server)

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.drain()))

    def reload(self) -> bool:
        ok = self.reloader.reload()
        if ok:
            for h in self.handlers:
                h.reconfigure()
            maillog.event("reload: profile and maps reloaded")
        else:
            maillog.event(f"reload failed, last good version stays: {self.reloader.last_error}")
            log.error("reload failed: %s", self.reloader.last_error)
        return ok

    async def drain(self, seconds: float = DRAIN_SECONDS) -> None:
        """Stop accepting, finish open transactions, then stop."""
        if self.stopped.is_set():
            return
        for h in self.handlers:
            h.draining = True
        for s in self.servers:
            s.close()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            busy = False
            for h in self.handlers:
                for session in list(h.sessions):
                    env = session.envelope
                    if env is None or not env.mail_from:
                        # idle between transactions: tell it to come back later
                        if session.transport is not None and not session.transport.is_closing():
                            session.transport.write(
                                b"421 4.3.2 Service shutting down, closing transmission "
                                b"channel\r\n")
                            session.transport.close()
                    else:
                        busy = True
            if not busy and not any(h.sessions for h in self.handlers):
                break
            await asyncio.sleep(0.05)
        if self._own_spool:
            await self.spool.aclose()
        self.stopped.set()

    async def wait(self) -> None:
        await self.stopped.wait()
