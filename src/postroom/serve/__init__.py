"""``postroom serve``: bind the listeners, run the services of the profile in one or
several processes, write the pid file, answer the control channel, handle signals.

    master ──binds sockets──▶ intake process 1 (intake + first attempts, one event loop)
       │ delivery (retries,    intake process 2 ...  (same sockets; the kernel spreads
       │ leftovers), control                          clients across processes)
       └── forwards reloads and SIGTERM, restarts an intake process that died

With one process (``--workers 1``) every service runs in the master's own event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import Coroutine
from typing import Any

from postroom import maillog
from postroom.intake import bind, tls_contexts
from postroom.runtime import Reloader
from postroom.serve import reload as reloading
from postroom.serve.services import ControlService, DeliveryService, IntakeService, Service
from postroom.site import Listener

Sockets = list[tuple[Listener, socket.socket]]


def event_loop_run(coro: Coroutine[Any, Any, None]) -> None:
    import uvloop

    uvloop.run(coro)


def run(site_dir: str | None, workers: int | None = None) -> None:
    reloader = Reloader(site_dir)
    site = reloader.current.site
    p = site.profile
    tls_contexts(site)  # a needed certificate that is missing stops us here, loudly
    for d in (site.state_dir, site.queue_dir, site.log_path.parent):
        d.mkdir(parents=True, exist_ok=True)
    maillog.open_log(site.log_path, p.site.hostname)
    sockets = [(lst, bind(lst)) for lst in p.listeners]
    bound = []
    for lst, sock in sockets:
        host, port = sock.getsockname()[:2]
        bound.append({"name": lst.name, "role": lst.role, "address": host, "port": port})
        print(f"postroom: listening {lst.name} ({lst.role}) on {host}:{port}", flush=True)
    (site.state_dir / "listeners.json").write_text(json.dumps(bound, indent=1))
    pidfile = site.state_dir / "serve.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    # Two per core: an intake process blocks in its fsyncs (see postroom.queue.spool), and
    # the other process on that core uses the time.
    count = workers or p.smtp.workers or 2 * (os.cpu_count() or 1)
    state = "quiescent" if site.quiescent else "accepting mail"
    maillog.event(f"starting: {len(sockets)} listeners, {count} intake processes, {state}")
    print(f"postroom: serving {site.home} with {count} intake process(es), {state}",
          flush=True)
    try:
        if count <= 1:
            event_loop_run(_single(reloader, sockets))
        else:
            from postroom.serve.master import master

            event_loop_run(master(site_dir or str(site.home), sockets, count, reloader))
    finally:
        pidfile.unlink(missing_ok=True)
        maillog.event("stopped")
        maillog.close_log()


async def run_services(services: list[Service], stopping: asyncio.Event) -> None:
    """Start in order, run until ``stopping``, stop in reverse order."""
    started: list[Service] = []
    try:
        for s in services:
            await s.start()
            started.append(s)
        await stopping.wait()
    finally:
        for s in reversed(started):
            await s.stop()


async def _single(reloader: Reloader, sockets: Sockets) -> None:
    delivery = DeliveryService(reloader)
    intake = IntakeService(reloader, sockets, delivery)
    services: list[Service] = [delivery, intake]
    stopping = asyncio.Event()
    commands = reloading.commands(reloader, services, delivery.runner)
    services.append(ControlService(reloader, commands))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: reloading.apply(reloader, services))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await run_services(services, stopping)
