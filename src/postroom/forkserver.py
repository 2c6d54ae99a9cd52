"""Intake processes forked from a process that has imported their code, so that they
share its memory pages instead of each importing everything again.

A Python process started with ``exec`` builds its modules, classes and functions in its
own memory; the intake processes of a master all build the same ones. Forked from one
that has them, they share those pages with it until they write to them (a copy on write,
page by page), as Postfix's daemons share their program text.

The master cannot fork them itself: by the time an intake process dies and needs
replacing, the master runs an event loop and threads, and a fork of a process with
threads can copy a lock that another thread held, which nobody will release. So
``postroom serve`` forks the fork server first, before it reads the site or starts
anything, with the server's modules imported. The fork server is a plain loop on a Unix
socket pair: the master sends an argument list and the listening sockets
(``SCM_RIGHTS``), the fork server forks, and the child runs ``worker_main`` with them.
It answers with the child's pid and, when a child ends, with its exit status (the fork
server is the children's parent, so it reaps them).

``ForkedProcess`` gives the master what it used of ``subprocess.Popen``: ``pid``,
``poll``, ``wait``, ``returncode``, ``send_signal``, ``kill``, through a pidfd, so a pid
that another process has taken since is never signalled. When the fork server is gone
(killed, silent for 5 s, or it could not start), ``ProcessGroup`` starts intake
processes with ``exec`` again, as before.

A forked child must be what an exec'd one is: it gets the signal dispositions Python's
start-up gives (SIGPIPE and SIGXFSZ ignored: a client that leaves before its reply must
cost an EPIPE, not the process), and it ends as an interpreter ends (the threading
module's exit hooks, the atexit functions, the streams flushed), then ``os._exit``, so
it never returns into the fork server's loop or the master's code below it.

The dying is chained: the fork server gets SIGKILL when the master dies, and each intake
process SIGTERM when the fork server dies (``PR_SET_PDEATHSIG``), so an intake process
drains when its master is gone, as before. The fork server ignores SIGTERM (a signal to
the whole group reaches the intake processes directly; the fork server goes when its
socket closes).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence

from postroom.children import MASTER_ENV

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_MAX_MESSAGE = 1 << 16
_MAX_FDS = 64
_ANSWER_WITHIN = 5.0  # seconds for the fork server to answer a spawn
# the signals the fork server ignores; a child gets them back as an exec'd Python has
# them (SIGPIPE and SIGXFSZ stay ignored, as Python's start-up leaves them: a write to a
# closed connection must be an error, not the end of the process)
_IGNORED = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class ForkServerGone(OSError):
    """The fork server does not answer: start processes with ``exec``."""


class ForkServer:
    """The master's end of the fork server."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.children: dict[int, ForkedProcess] = {}  # not yet reported ended
        self._reaped = False

    @classmethod
    def start(cls, main: Callable[[list[str]], None]) -> ForkServer | None:
        """Fork the fork server (call with no thread and no event loop running); its
        children run ``main(argv)``. None where fork is not to be had."""
        if not hasattr(os, "pidfd_open") or not sys.platform.startswith("linux"):
            return None
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as e:
            log.warning("no fork server (%s): intake processes start with exec", e)
            return None
        master = os.getpid()
        try:
            pid = os.fork()
        except OSError as e:
            ours.close()
            theirs.close()
            log.warning("no fork server (%s): intake processes start with exec", e)
            return None
        if pid == 0:  # the fork server; never returns into the master's code
            code = 1
            try:
                ours.close()
                _serve(theirs, master, main)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        theirs.close()
        ours.set_inheritable(False)
        return cls(ours, pid)

    def spawn(self, argv: Sequence[str], fds: Sequence[tuple[int, Sequence[str]]]
              ) -> ForkedProcess:
        """A child running ``main(argv + ...)``: for each (fd, arguments) of ``fds`` the
        fd is passed, and the arguments follow ``argv`` with "{}" in them made the fd's
        number in the child."""
        request = {"argv": list(argv), "fd_args": [list(a) for _, a in fds]}
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], [fd for fd, _ in fds])
            while True:
                reply = self._read(timeout=_ANSWER_WITHIN)
                if "pid" in reply:
                    return self._adopt(int(str(reply["pid"])))
                if "error" in reply:
                    raise ForkServerGone(f"the fork server could not fork: {reply['error']}")
        except OSError as e:
            if not isinstance(e, ForkServerGone):
                e = ForkServerGone(f"the fork server is gone: {e}")
            self.kill()  # one that did not answer may still fork: nobody would watch it
            raise e from None

    def _adopt(self, pid: int) -> ForkedProcess:
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except OSError:  # ended already; its report follows
            pidfd = None
        child = ForkedProcess(self, pid, pidfd)
        self.children[pid] = child
        return child

    def collect(self) -> None:
        """Take in the exit reports that have arrived (without waiting)."""
        try:
            while select.select([self.sock], [], [], 0)[0]:
                self._read(timeout=0)
        except OSError:
            pass

    def _read(self, timeout: float) -> dict[str, object]:
        if timeout and not select.select([self.sock], [], [], timeout)[0]:
            raise ForkServerGone(f"the fork server did not answer within {timeout:g} s")
        data = self.sock.recv(_MAX_MESSAGE)
        if not data:
            raise ForkServerGone("the fork server closed its socket")
        reply: dict[str, object] = json.loads(data)
        if "exited" in reply:  # the fork server reports an end before it reuses the pid
            child = self.children.pop(int(str(reply["exited"])), None)
            if child is not None:
                child._ended(int(str(reply["status"])))
        return reply

    def alive(self) -> bool:
        if not self._reaped and _reap(self.pid) is not None:
            self._reaped = True
        return not self._reaped

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """The fork server exits when its socket closes; its children go on."""
        self.sock.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.alive():
            time.sleep(0.01)


def _reap(pid: int) -> int | None:
    """The fork server's exit status once it has exited (it is the master's child)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -1
    return os.waitstatus_to_exitcode(status) if done else None


class ForkedProcess:
    """An intake process forked by the fork server, seen from the master. It is watched
    and signalled through a pidfd, so a pid used again by another process is never
    mistaken for it."""

    def __init__(self, server: ForkServer, pid: int, pidfd: int | None) -> None:
        self.server = server
        self.pid = pid
        self.pidfd = pidfd
        self.returncode: int | None = None

    def _ended(self, code: int) -> None:
        self.returncode = code
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.server.collect()
        if self.returncode is None and not self._running() and not self.server.alive():
            self.server.children.pop(self.pid, None)
            self._ended(-signal.SIGKILL)  # ended, and nobody left to report how
        return self.returncode

    def _running(self) -> bool:
        if self.pidfd is None:
            return False
        return not select.select([self.pidfd], [], [], 0)[0]  # readable once it ended

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"intake process {self.pid}", timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            else:  # no pidfd (an old kernel): by pid
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# -- the fork server itself -----------------------------------------------------------------

def _serve(sock: socket.socket, master: int, main: Callable[[list[str]], None]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != master:  # the master died between the fork and now
        return
    for sig in _IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # the wake-up fd is written
    import gc

    gc.freeze()  # what the children inherit is never walked by their collector
    me = os.getpid()
    while True:
        ready: list[int] = select.select([sock.fileno(), wake_r], [], [])[0]
        if wake_r in ready:
            while True:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    break
            _report_exits(sock)
        if sock.fileno() in ready:
            try:
                data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, _MAX_FDS)
            except OSError:
                data, fds = b"", []
            if not data:  # the master closed its end (or died): stop; children go on
                return
            request = json.loads(data)
            argv = list(request["argv"])
            for fd, args in zip(fds, request["fd_args"], strict=True):
                argv += [a.replace("{}", str(fd)) for a in args]
            try:
                pid = os.fork()
            except OSError as e:
                for fd in fds:
                    os.close(fd)
                sock.send(json.dumps({"error": str(e)}).encode())
                continue
            if pid == 0:
                sock.close()
                os.close(wake_r)
                os.close(wake_w)
                _child(argv, main, me)
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"pid": pid}).encode())
            _report_exits(sock)


def _report_exits(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        try:
            sock.send(json.dumps({"exited": pid, "status": code}).encode())
        except OSError:
            return


def _child(argv: list[str], main: Callable[[list[str]], None], parent: int) -> None:
    """Run ``main(argv)`` and exit as an interpreter does: never return into the fork
    server's loop (or, below it, the master's code)."""
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ[MASTER_ENV] = str(parent)  # die_with_parent: the fork server
        main(argv)
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            _exit_as_python_does()
        finally:
            os._exit(code)


def _exit_as_python_does() -> None:
    """What the interpreter does at exit before it ends the process: the threading
    module's exit hooks and the wait for threads that are not daemons, the atexit
    functions, the streams flushed."""
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
