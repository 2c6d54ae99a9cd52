"""The master of a multi-process server, and the intake processes it starts.

The master binds every listener and passes the sockets to ``smtp.workers`` intake
processes (``python -m postroom.worker``), which share them, so the kernel spreads
connections across both cores. It runs delivery (retries, and what an intake process
left) and the control channel, restarts an intake process that dies, and tells them to
reload (SIGHUP) or to pick up changed lists (SIGUSR1). SIGTERM drains everything.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import signal
import socket
import sys

from postroom import control, maillog
from postroom.children import ProcessGroup, die_with_parent
from postroom.forkserver import ForkServer
from postroom.ops.sdnotify import SystemdNotify
from postroom.runtime import Reloader
from postroom.serve import Sockets, event_loop_run, run_services
from postroom.serve import reload as reloading
from postroom.serve.periodic import PeriodicService
from postroom.serve.services import ControlService, DeliveryService, IntakeService, Service
from postroom.serve.tasks import TASKS
from postroom.web.service import WebProcess

DRAIN_SECONDS = 35.0


class Workers(ProcessGroup):
    """The intake processes, as one service of the master: forked by ``forks`` (a fork
    server started before the master read the site) when there is one, else started
    with ``exec``."""

    name = "workers"

    def __init__(self, site_dir: str, sockets: Sockets, count: int,
                 forks: ForkServer | None = None) -> None:
        fds = {lst.name: sock.fileno() for lst, sock in sockets}
        args = ["--site", site_dir]
        for name, fd in fds.items():
            args += ["--listener", f"{name}={fd}"]
        fork = None
        if forks is not None:  # "{}": the fd's number in the child
            passed = [(fd, ("--listener", f"{name}={{}}")) for name, fd in fds.items()]
            fork = functools.partial(forks.spawn, ["--site", site_dir], passed)
        super().__init__("intake process", [sys.executable, "-m", "postroom.worker", *args],
                         list(fds.values()), count, drain=DRAIN_SECONDS, fork=fork)


async def master(site_dir: str, sockets: Sockets, count: int, reloader: Reloader, *,
                 web: socket.socket | None = None, forks: ForkServer | None = None) -> None:
    delivery = DeliveryService(reloader)  # retries and leftovers
    workers = Workers(site_dir, sockets, count, forks)
    periodic = PeriodicService(reloader, TASKS)
    services: list[Service] = [delivery, workers, periodic]
    if web is not None:
        services.append(WebProcess(site_dir, web, reloader.current.site.profile.web.processes))
    commands = reloading.commands(
        reloader, services, delivery.runner, periodic=periodic,
        approve=lambda held_id: delivery.lists.engine().approve(held_id),
        status=lambda: {"ok": True, "workers": [p.pid for p in workers.procs]})
    commands["lists"] = _lists_command(reloader, workers, periodic)
    services.insert(1, ControlService(reloader, commands))
    services.append(SystemdNotify())  # last: READY=1 once every other service runs
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: reloading.apply(reloader, services))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    async def take_over() -> None:
        # an intake process died: the kernel freed its claims, take its mail over now
        while True:
            await workers.died.wait()
            workers.died.clear()
            delivery.runner.rescan()

    watcher = asyncio.ensure_future(take_over())
    try:
        await run_services(services, stopping)
    finally:
        watcher.cancel()


def _lists_command(reloader: Reloader, workers: Workers,
                   periodic: PeriodicService) -> control.Command:
    def lists() -> control.Reply:
        reloader.refresh_lists()
        workers.signal(signal.SIGUSR1)
        periodic.changed()
        return {"ok": True}

    return lists


async def _intake_process(reloader: Reloader, sockets: Sockets) -> None:
    """An intake process: intake, and the first attempt of what it took in (from memory,
    on the same core). Retries are the master's."""
    delivery = DeliveryService(reloader, scan=False)
    services: list[Service] = [delivery, IntakeService(reloader, sockets, delivery)]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP,
                            lambda: reloading.apply(reloader, services, quiet=True))
    loop.add_signal_handler(signal.SIGUSR1, reloader.refresh_lists)
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    # The maps, the profile and the imported modules live as long as the process: keep
    # them out of the collector's full passes, which would otherwise walk them all again
    # and again under load.
    gc.freeze()
    await run_services(services, stopping)


def worker_main(argv: list[str]) -> None:
    """Entry of ``python -m postroom.worker``: intake on inherited sockets."""
    die_with_parent()
    ap = argparse.ArgumentParser(prog="postroom-worker")
    ap.add_argument("--site", required=True)
    ap.add_argument("--listener", action="append", default=[])
    args = ap.parse_args(argv)
    reloader = Reloader(args.site)
    site = reloader.current.site
    maillog.open_log(site.log_path, site.profile.site.hostname)
    by_name = {lst.name: lst for lst in site.profile.listeners}
    sockets = []
    for spec in args.listener:
        name, _, fd = spec.partition("=")
        sock = socket.socket(fileno=int(fd))
        sock.setblocking(False)
        sockets.append((by_name[name], sock))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master decides; SIGTERM drains
    event_loop_run(_intake_process(reloader, sockets))
