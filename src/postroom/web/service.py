"""How ``postroom serve`` runs the web app: on a socket the master binds at start (so a
port in use stops the start with one line, like an SMTP listener), either

    WebInLoop     uvicorn inside the server's own event loop (``--workers 1``)
    WebProcess    ``python -m postroom.web --site S --fd N``, processes of their own
                  (``[web] processes``, sharing the socket) that the master starts,
                  restarts when one dies, tells to reload (SIGHUP) and stops (SIGTERM),
                  so no web request ever slows the master's delivery loop

Both stay up while the site is quiescent: that is when an operator checks lists, members
and archives after a restore.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from postroom.children import ProcessGroup
from postroom.runtime import Reloader, Runtime
from postroom.site import Site

DRAIN_SECONDS = 10.0


def bind_web(site: Site) -> socket.socket | None:
    """The web listener's socket, bound and listening; None when ``[web]`` is off.
    Raises OSError as ``bind`` does."""
    web = site.profile.web
    if not web.enabled:
        return None
    family = socket.AF_INET6 if ":" in web.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((web.address, web.port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, site: Site, **more: Any) -> Any:
    import uvicorn

    web = site.profile.web
    tls: dict[str, Any] = {}
    if web.tls:
        tls = {"ssl_certfile": str(site.path(site.profile.tls.cert)),
               "ssl_keyfile": str(site.path(site.profile.tls.key))}
    proxies = [p.split("/")[0] if p.endswith(("/32", "/128")) else p
               for p in web.trusted_proxies]
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                          proxy_headers=bool(proxies), forwarded_allow_ips=proxies or [],
                          server_header=False, timeout_graceful_shutdown=5, **tls, **more)


def limit_page_threads(site: Site) -> None:
    """Threads for the pages (Starlette's pool for sync routes), set in the running loop.
    Few with SQLite: its driver hands the GIL back and forth at every row, so many
    threads reading at once mostly wait on each other (a members page at 32 connections
    served more requests a second with 1-2 threads than with anyio's default of 40).
    PostgreSQL's threads wait on the network instead, and more of them overlap."""
    import anyio.to_thread

    from postroom.store.db import store_url

    threads = site.profile.web.threads or (
        2 if store_url(site).get_backend_name() == "sqlite" else 16)
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads


class WebInLoop:
    """The web app served by uvicorn in this process's event loop."""

    name = "web"

    def __init__(self, reloader: Reloader, sock: socket.socket) -> None:
        self.reloader = reloader
        self.sock = sock
        self.server: Any = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import uvicorn

        from postroom.web.app import create_app

        site = self.reloader.current.site
        app = create_app(lambda: self.reloader.current, tls=site.profile.web.tls)
        self.server = uvicorn.Server(uvicorn_config(app, site))
        limit_page_threads(site)
        # _serve, not serve: serve() takes over SIGTERM and SIGINT, which are the
        # master's (uvicorn 0.29-0.54; tests/web/test_service.py starts and stops it)
        self.task = asyncio.ensure_future(self.server._serve(sockets=[self.sock]))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, DRAIN_SECONDS)
            except (TimeoutError, asyncio.CancelledError):
                pass

    def reload(self, old: Runtime, new: Runtime) -> None:
        return None  # the app reads the reloader's runtime at every request


class WebProcess(ProcessGroup):
    """The web app in processes of its own, supervised by the master."""

    name = "web"

    def __init__(self, site_dir: str, sock: socket.socket, count: int = 1) -> None:
        argv = [sys.executable, "-m", "postroom.web", "--site", site_dir,
                "--fd", str(sock.fileno())]
        super().__init__("web process", argv, [sock.fileno()], count,
                         drain=DRAIN_SECONDS, pause=0.5)
        self.sock = sock
