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
import errno
import json
import os
import pwd
import signal
import socket
import sqlite3
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from postroom import control, maillog
from postroom.errors import (
    EX_CANTCREAT,
    EX_CONFIG,
    EX_OSERR,
    EX_UNAVAILABLE,
    PostroomError,
)
from postroom.forkserver import ForkServer
from postroom.intake import bind, tls_contexts
from postroom.runtime import Reloader
from postroom.serve import reload as reloading
from postroom.serve.services import ControlService, DeliveryService, IntakeService, Service
from postroom.site import Listener, Site
from postroom.site.home import PROFILE_NAME
from postroom.site.load import resolve_home
from postroom.srs import secrets as srs_secrets

Sockets = list[tuple[Listener, socket.socket]]
ANOTHER_SERVER = "another postroom serve already runs for this site"


class CannotStart(PostroomError):
    """``postroom serve`` cannot start: one line that names what is in the way and the fix
    (printed as ``postroom: ...`` by the command, which exits with ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = EX_UNAVAILABLE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def event_loop_run(coro: Coroutine[Any, Any, None]) -> None:
    import uvloop

    uvloop.run(coro)


def run(site_dir: str | None, workers: int | None = None) -> None:
    """Serve until SIGTERM. Whatever stops the start (an unreadable site home, a second
    server for the site, a port in use, a directory that cannot be written) is one
    CannotStart line. A second server is refused before it touches anything the running
    one wrote (serve.pid, listeners.json, the mail log), and a start that fails later
    leaves neither file behind."""
    check_home(site_dir)
    forks = start_fork_server(site_dir) if workers != 1 else None  # before the site is read
    try:
        _run(site_dir, workers, forks)
    finally:
        if forks is not None:
            forks.close()


def start_fork_server(site_dir: str | None) -> ForkServer | None:
    """The fork server of the intake processes, with their code imported: forked now,
    while this process has no thread and no event loop (``postroom.forkserver``). A site
    with lists gets the list engine imported first, so that every process shares it
    (each would import it a second after its start: ``LazyLists.warm``)."""
    import gc
    import importlib

    from postroom.serve.master import worker_main
    from postroom.serve.services import LIST_ENGINE_MODULES

    if has_lists(site_dir):
        for module in LIST_ENGINE_MODULES:
            importlib.import_module(module)

    # What is imported now lives as long as the server: out of the collector's reach in
    # this process too, whose full collections would otherwise write to every object
    # and so copy the pages it shares with the fork server and the intake processes.
    gc.freeze()
    return ForkServer.start(worker_main)


def has_lists(site_dir: str | None) -> bool:
    """Whether the site's store has a list, read without the site's loader (which comes
    after the fork): a list in the SQLite store, or a database URL in the profile (whose
    lists are read through SQLAlchemy, which the engine imports too). Unreadable: no."""
    import tomllib

    from postroom.store.listnames import read_sqlite

    home = resolve_home(site_dir)
    try:
        with open(home / PROFILE_NAME, "rb") as f:
            if (tomllib.load(f).get("database") or {}).get("url"):
                return True
        db = home / "postroom.db"
        return db.exists() and bool(read_sqlite(db))
    except (OSError, ValueError, sqlite3.Error):
        return False


def _run(site_dir: str | None, workers: int | None, forks: ForkServer | None) -> None:
    reloader = Reloader(site_dir)
    site = reloader.current.site
    p = site.profile
    refuse_second_server(site)
    tls_contexts(site)  # a needed certificate that is missing stops us here, loudly
    pidfile = site.state_dir / "serve.pid"
    sockets: Sockets = []
    web: socket.socket | None = None
    try:
        for d in (site.state_dir, site.queue_dir, site.log_path.parent):
            d.mkdir(parents=True, exist_ok=True)
        if srs_secrets.ensure(site.path(p.srs.secret_file)):  # a site made before SRS
            reloader.reload()
        pidfile.write_text(f"{os.getpid()}\n")
        maillog.open_log(site.log_path, p.site.hostname)
        sockets = bind_listeners(site)
        bound = []
        for lst, sock in sockets:
            host, port = sock.getsockname()[:2]
            bound.append({"name": lst.name, "role": lst.role, "address": host, "port": port})
        web = _bind_web(site, sockets)
        if web is not None:
            host, port = web.getsockname()[:2]
            bound.append({"name": "web", "role": "web", "address": host, "port": port})
        (site.state_dir / "listeners.json").write_text(json.dumps(bound, indent=1))
    except (OSError, CannotStart) as e:
        for _, sock in sockets:
            sock.close()
        if web is not None:
            web.close()
        _remove_own_pidfile(pidfile)
        maillog.close_log()
        if isinstance(e, CannotStart):
            raise
        raise CannotStart(_cannot_write(site, e), EX_CANTCREAT) from None
    for entry in bound:
        print(f"postroom: listening {entry['name']} ({entry['role']}) on "
              f"{entry['address']}:{entry['port']}", flush=True)
    # Two per core: an intake process blocks in its fsyncs (see postroom.queue.spool), and
    # the other process on that core uses the time.
    count = workers or p.smtp.workers or (os.cpu_count() or 1)
    state = "quiescent" if site.quiescent else "accepting mail"
    maillog.event(f"starting: {len(sockets)} listeners, {count} intake processes, {state}")
    print(f"postroom: serving {site.home} with {count} intake process(es), {state}",
          flush=True)
    try:
        if count <= 1:
            if forks is not None:
                forks.close()
            event_loop_run(_single(reloader, sockets, web))
        else:
            from postroom.serve.master import master

            event_loop_run(master(site_dir or str(site.home), sockets, count, reloader,
                                  web=web, forks=forks))
    except OSError as e:
        if ANOTHER_SERVER not in str(e):
            raise
        # the control socket was taken between refuse_second_server and now (two serves
        # started at the same moment): the other one runs the site
        raise CannotStart(_second_server_text(site)) from None
    finally:
        _remove_own_pidfile(pidfile)
        maillog.event("stopped")
        maillog.close_log()


# -- start-up checks: each failure is one line naming the thing and the fix

def check_home(site_dir: str | None) -> None:
    """The site home is a directory whose profile this user can read (else CannotStart).
    A home without a profile is left to the loader, which says how to make one."""
    home = resolve_home(site_dir)
    try:
        if home.exists() and not home.is_dir():
            raise CannotStart(f"site home {home} is not a directory (fix: --site or "
                              "POSTROOM_SITE must name the directory 'postroom init DIR' "
                              "made)", EX_CONFIG)
        profile = home / PROFILE_NAME
        with open(profile, "rb"):
            pass
    except FileNotFoundError:
        return
    except IsADirectoryError:
        return  # the loader names it
    except PermissionError as e:
        where = Path(e.filename) if e.filename and _can_list(home) else home
        raise CannotStart(_no_permission(where, home), EX_CONFIG) from None


def _can_list(directory: Path) -> bool:
    try:
        os.listdir(directory)
    except OSError:
        return False
    return True


def _no_permission(where: Path, home: Path) -> str:
    me = _user_name(os.geteuid())
    owner = _owner(home)
    if owner is not None and owner != me:
        fix = (f"run 'postroom serve' as {owner}, who owns {home}, or let {me} read it: "
               f"chown -R {me} {home}")
    elif where == home:
        fix = f"let {me} into the site home: chmod u+rwx {home}"
    else:
        fix = f"let {me} read and write it: chmod u+rw {where}"
    return f"cannot read {where}: permission denied (fix: {fix})"


def _cannot_write(site: Site, e: OSError) -> str:
    path = e.filename or site.home
    reason = (e.strerror or str(e)).lower()
    return (f"cannot write {path}: {reason} (fix: the site home {site.home} and everything "
            f"in it must be writable by {_user_name(os.geteuid())}, the user postroom serve "
            "runs as)")


def _owner(path: Path) -> str | None:
    try:
        return _user_name(os.stat(path).st_uid)
    except OSError:
        return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def refuse_second_server(site: Site) -> None:
    """CannotStart if a server already holds this site's control channel. Checked by
    binding its address (abstract: it is free again when this probe closes), so it also
    catches a server that is still starting."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.bind(control.address(site.state_dir))
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise CannotStart(f"cannot open the control channel of {site.home}: "
                              f"{e.strerror}", EX_OSERR) from None
        raise CannotStart(_second_server_text(site)) from None
    finally:
        probe.close()


def _second_server_text(site: Site) -> str:
    pid = _running_pid(site)
    if pid is None:
        return (f"{ANOTHER_SERVER} ({site.home}) (fix: stop it first, e.g. 'postroom "
                "status' to find it; or serve another site home with --site)")
    return (f"{ANOTHER_SERVER} ({site.home}, pid {pid}) (fix: stop it first with "
            f"'kill -TERM {pid}', or serve another site home with --site)")


def _running_pid(site: Site) -> int | None:
    try:
        pid = int((site.state_dir / "serve.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() else None


def bind_listeners(site: Site) -> Sockets:
    """Every listener's socket, bound; CannotStart naming the listener that cannot be
    (the ones bound before it are closed again)."""
    sockets: Sockets = []
    for lst in site.profile.listeners:
        try:
            sockets.append((lst, bind(lst)))
        except OSError as e:
            for _, sock in sockets:
                sock.close()
            raise CannotStart(*_bind_error(site, lst, e)) from None
    return sockets


def _bind_error(site: Site, lst: Listener, e: OSError) -> tuple[str, int]:
    where = f"[{lst.address}]:{lst.port}" if ":" in lst.address else f"{lst.address}:{lst.port}"
    head = f"listener {lst.name}: cannot listen on {where}"
    profile = site.profile_path
    if e.errno == errno.EADDRINUSE:
        return (f"{head}: address already in use (another mail server? change "
                f"[[listeners]] port in {profile})", EX_UNAVAILABLE)
    if e.errno == errno.EACCES:
        return (f"{head}: permission denied (ports below 1024 need root or "
                f"CAP_NET_BIND_SERVICE; or change [[listeners]] port in {profile})", EX_OSERR)
    if e.errno == errno.EADDRNOTAVAIL:
        return (f"{head}: no such address on this machine (change [[listeners]] address "
                f"in {profile})", EX_CONFIG)
    reason = (e.strerror or str(e)).lower()
    return f"{head}: {reason} (check [[listeners]] in {profile})", EX_OSERR


def _bind_web(site: Site, sockets: Sockets) -> socket.socket | None:
    """The web listener's socket (``[web]``), or None; CannotStart naming it when it
    cannot be bound (the SMTP listeners bound before it are closed again)."""
    from postroom.web.service import bind_web

    try:
        return bind_web(site)
    except OSError as e:
        for _, sock in sockets:
            sock.close()
        w = site.profile.web
        head = f"web: cannot listen on {w.address}:{w.port}"
        if e.errno == errno.EADDRINUSE:
            raise CannotStart(f"{head}: address already in use (change [web] port in "
                              f"{site.profile_path})") from None
        reason = (e.strerror or str(e)).lower()
        raise CannotStart(f"{head}: {reason} (check [web] in {site.profile_path})",
                          EX_OSERR) from None


def _remove_own_pidfile(pidfile: Path) -> None:
    """Remove serve.pid if it is still this process's (never another server's)."""
    try:
        if pidfile.read_text().strip() == str(os.getpid()):
            pidfile.unlink()
    except (OSError, ValueError):
        pass


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


async def _single(reloader: Reloader, sockets: Sockets,
                  web: socket.socket | None = None) -> None:
    from postroom.ops.sdnotify import SystemdNotify
    from postroom.serve.periodic import PeriodicService
    from postroom.serve.tasks import TASKS

    delivery = DeliveryService(reloader)
    intake = IntakeService(reloader, sockets, delivery)
    periodic = PeriodicService(reloader, TASKS)
    services: list[Service] = [delivery, intake, periodic]
    if web is not None:
        from postroom.web.service import WebInLoop

        services.append(WebInLoop(reloader, web))
    stopping = asyncio.Event()
    commands = reloading.commands(
        reloader, services, delivery.runner, periodic=periodic,
        approve=lambda held_id: delivery.lists.engine().approve(held_id))
    services.append(ControlService(reloader, commands))
    services.append(SystemdNotify())  # last: READY=1 once every other service runs
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: reloading.apply(reloader, services))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await run_services(services, stopping)
