"""The processes a master starts (intake processes, web processes) die with it.

A master killed with SIGKILL cannot tell its children to stop; left alone they would go
on taking mail (intake) or serving pages (web) for a site whose master, retries and
control channel are gone, and a new ``serve`` would find them holding its ports. Linux
sends each child SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and the child
drains as it does at an ordinary stop.

``ProcessGroup`` is how the master runs such children as one of its services: started
with ``exec``, or forked by a fork server (``postroom.forkserver``) when it is given one.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from postroom import maillog

_PR_SET_PDEATHSIG = 1
MASTER_ENV = "POSTROOM_MASTER_PID"


def child_env() -> dict[str, str]:
    """The environment to start a child with (it names the master)."""
    return {**os.environ, MASTER_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """Call first thing in a child: SIGTERM when its parent goes (the master, or the
    fork server that forked it: ``MASTER_ENV`` names the parent); if it went already
    (between the fork and now), exit at once."""
    if not sys.platform.startswith("linux") or MASTER_ENV not in os.environ:
        return
    parent = int(os.environ[MASTER_ENV])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(0)


class ProcessGroup:
    """``count`` copies of one child process, as a service of the master: started, each
    restarted when it dies, told of a reload (SIGHUP), drained at stop (SIGTERM, then
    SIGKILL after ``drain`` seconds). ``what`` names them in the mail log; ``died`` is set
    whenever one had to be restarted."""

    name = "children"

    def __init__(self, what: str, argv: list[str], fds: list[int], count: int, *,
                 drain: float, pause: float = 0.0,
                 fork: Callable[[], Any] | None = None) -> None:
        self.what = what
        self.argv = argv
        self.fds = fds
        self.count = count
        self.drain = drain
        self.pause = pause  # before a restart: a child that cannot start must not spin
        self.fork = fork  # a child from the fork server, or an error: then exec, as here
        self.procs: list[Any] = []  # subprocess.Popen, or forkserver.ForkedProcess
        self.died = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    def _spawn(self) -> Any:
        if self.fork is not None:
            try:
                return self.fork()
            except OSError as e:
                maillog.event(f"warning: {self.what}: {e}; starting it with exec")
                self.fork = None
        return subprocess.Popen(self.argv, pass_fds=self.fds, env=child_env())

    async def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.count)]
        self._watch = asyncio.ensure_future(self._supervise())

    async def _supervise(self) -> None:
        while not self._stopping:
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and not self._stopping:
                    maillog.event(f"{self.what} {proc.pid} exited ({proc.returncode}); "
                                  "starting another")
                    if self.pause:
                        await asyncio.sleep(self.pause)
                    self.procs[i] = self._spawn()
                    self.died.set()
            await asyncio.sleep(0.2)

    def signal(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    async def stop(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.drain
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def reload(self, old: object, new: object) -> None:
        self.signal(signal.SIGHUP)
