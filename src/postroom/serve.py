"""``postroom serve``: bind the listeners, run intake in one or several processes, and
(later) the queue runner; write the pid file; handle signals.

    master ──binds sockets──▶ worker 1 (intake: every listener, one event loop)
       │                      worker 2 ...   (same sockets; the kernel spreads clients)
       └── forwards SIGHUP / SIGTERM, restarts a worker that died, removes the pid file

With one worker (``--workers 1``) everything runs in the master's own event loop.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time

from postroom import maillog
from postroom.intake import Intake, bind, tls_contexts
from postroom.runtime import Reloader
from postroom.site import Listener


def _event_loop_run(coro: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(coro)  # type: ignore[arg-type]
        return
    uvloop.run(coro)  # type: ignore[arg-type]


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
            _event_loop_run(_single(reloader, sockets))
        else:
            _event_loop_run(_master(site_dir or str(site.home), sockets, count, reloader))
    finally:
        pidfile.unlink(missing_ok=True)
        maillog.event("stopped")
        maillog.close_log()


class Delivery:
    """The queue runner and its couriers, in whichever process runs them."""

    def __init__(self, reloader: Reloader, *, scan: bool = True,
                 leave_fresh: bool = False) -> None:
        from postroom.delivery import couriers_for
        from postroom.queue.runner import QueueRunner
        from postroom.queue.spool import Spool

        site = reloader.current.site
        self.spool = Spool(site.queue_dir)
        if scan:
            self.spool.recover()
        self.couriers = couriers_for(site)
        self.runner = QueueRunner(reloader, self.spool, self.couriers, scan=scan,
                                  leave_fresh=leave_fresh)
        self.task: asyncio.Task[None] | None = None

    def start(self, *, signals: bool = True) -> None:
        self.task = asyncio.ensure_future(self.runner.run())
        if not signals:
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self.runner.flush)  # postroom queue flush
        loop.add_signal_handler(signal.SIGUSR2, self.runner.wake.set)  # new local mail

    async def stop(self) -> None:
        from postroom.delivery import aclose_all

        await self.runner.stop()
        if self.task is not None:
            await self.task
        await aclose_all(self.couriers)
        await self.spool.aclose()


async def _single(reloader: Reloader, sockets: list[tuple[Listener, socket.socket]]) -> None:
    delivery = Delivery(reloader)
    intake = Intake(reloader, sockets, on_queued=delivery.runner.take, spool=delivery.spool)
    await intake.start()
    intake.install_signals()
    delivery.start()
    await intake.wait()
    await delivery.stop()


async def _intake_only(reloader: Reloader,
                       sockets: list[tuple[Listener, socket.socket]]) -> None:
    """A worker: intake, and the first delivery attempt of what it took in (from memory,
    on the same core). Retries are the master's."""
    delivery = Delivery(reloader, scan=False)
    intake = Intake(reloader, sockets, on_queued=delivery.runner.take, spool=delivery.spool)
    await intake.start()
    intake.install_signals()
    delivery.start(signals=False)
    # The maps, the profile and the imported modules live as long as the process: keep
    # them out of the collector's full passes, which would otherwise walk them all again
    # and again under load.
    gc.freeze()
    await intake.wait()
    await delivery.stop()


async def _master(site_dir: str, sockets: list[tuple[Listener, socket.socket]], count: int,
                  reloader: Reloader) -> None:
    fds = {lst.name: sock.fileno() for lst, sock in sockets}
    argv = [sys.executable, "-m", "postroom.worker", "--site", site_dir]
    for name, fd in fds.items():
        argv += ["--listener", f"{name}={fd}"]

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, pass_fds=list(fds.values()))

    delivery = Delivery(reloader, leave_fresh=True)  # retries and leftovers

    procs = [spawn() for _ in range(count)]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def forward(sig: int) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def on_hup() -> None:
        if not reloader.reload():
            maillog.event(f"reload failed in master: {reloader.last_error}")
        forward(signal.SIGHUP)

    def on_term() -> None:
        stopping.set()
        forward(signal.SIGTERM)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGTERM, on_term)
    loop.add_signal_handler(signal.SIGINT, on_term)
    delivery.start()
    while not stopping.is_set():
        for i, proc in enumerate(procs):
            if proc.poll() is not None and not stopping.is_set():
                maillog.event(f"intake process {proc.pid} exited ({proc.returncode}); "
                              "starting another")
                procs[i] = spawn()
        try:
            await asyncio.wait_for(stopping.wait(), timeout=0.5)
        except TimeoutError:
            pass
    deadline = time.monotonic() + 35
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    await delivery.stop()


def worker_main(argv: list[str]) -> None:
    """Entry of ``python -m postroom.worker``: intake on inherited sockets."""
    import argparse

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
    _event_loop_run(_intake_only(reloader, sockets))
