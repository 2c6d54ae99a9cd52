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
``poll``, ``wait``, ``returncode``, ``send_signal``, ``kill``. When the fork server is
gone (killed, or it could not start), ``ProcessGroup`` starts intake processes with
``exec`` again, as before.

The dying is chained: the fork server gets SIGKILL when the master dies, and each intake
process SIGTERM when the fork server dies (``PR_SET_PDEATHSIG``), so an intake process
drains when its master is gone, as before.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from postroom.children import MASTER_ENV

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_MAX_MESSAGE = 1 << 16
_MAX_FDS = 64
# the children's dispositions are the loop's to set; the fork server ignores these
_IGNORED = (signal.SIGHUP, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE)


class ForkServerGone(OSError):
    """The fork server does not answer: start processes with ``exec``."""


class ForkServer:
    """The master's end of the fork server."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.exited: dict[int, int] = {}  # child pid -> returncode, as reported

    @classmethod
    def start(cls, main: Callable[[list[str]], None]) -> ForkServer | None:
        """Fork the fork server (call with no thread and no event loop running); its
        children run ``main(argv)``. None where fork is not to be had."""
        if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        master = os.getpid()
        pid = os.fork()
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

    def spawn(self, argv: Sequence[str], fds: Sequence[int]) -> ForkedProcess:
        """A child running ``main(argv)``, with ``fds`` (received as new descriptors):
        ``{0}``, ``{1}``... in ``argv`` become their numbers in the child."""
        try:
            socket.send_fds(self.sock, [json.dumps({"argv": list(argv)}).encode()],
                            list(fds))
            while True:
                reply = self._read(block=True)
                if reply is None:
                    raise ForkServerGone("the fork server closed its socket")
                if "pid" in reply:
                    return ForkedProcess(self, int(str(reply["pid"])))
                if "error" in reply:
                    raise ForkServerGone(f"the fork server could not fork: {reply['error']}")
        except OSError as e:
            if isinstance(e, ForkServerGone):
                raise
            raise ForkServerGone(f"the fork server is gone: {e}") from e

    def collect(self) -> None:
        """Take in the exit reports that have arrived (without waiting)."""
        try:
            while self._read(block=False) is not None:
                pass
        except OSError:
            pass

    def _read(self, *, block: bool) -> dict[str, object] | None:
        if not block and not select.select([self.sock], [], [], 0)[0]:
            return None
        data = self.sock.recv(_MAX_MESSAGE)
        if not data:
            if block:
                return None
            raise ForkServerGone("the fork server closed its socket")
        reply: dict[str, object] = json.loads(data)
        if "exited" in reply:
            self.exited[int(str(reply["exited"]))] = int(str(reply["status"]))
        return reply

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return _reap(self.pid) is None

    def close(self) -> None:
        """The fork server exits when its socket closes; its children go on."""
        self.sock.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _reap(self.pid) is None:
            time.sleep(0.01)


def _reap(pid: int) -> int | None:
    """The fork server's exit status once it has exited (it is the master's child)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -1
    return os.waitstatus_to_exitcode(status) if done else None


class ForkedProcess:
    """An intake process forked by the fork server, seen from the master."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.server.collect()
            code = self.server.exited.pop(self.pid, None)
            if code is not None:
                self.returncode = code
            elif not _exists(self.pid) and not self.server.alive():
                self.returncode = -signal.SIGKILL  # ended, and nobody left to report how
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                import subprocess

                raise subprocess.TimeoutExpired(f"intake process {self.pid}", timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _exists(pid: int) -> bool:
    """``pid`` is a process that has not ended. A zombie has ended: its parent (the fork
    server, or once that is gone, an init that does not reap) has not waited for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rfind(b")") + 2:][:1] != b"Z"


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
            argv = [a.format(*fds) for a in json.loads(data)["argv"]]
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
                _child(argv, main)
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


def _join_threads() -> None:
    """What an interpreter's exit does first: wait for the threads that are not daemons."""
    import threading

    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join()


def _child(argv: list[str], main: Callable[[list[str]], None]) -> None:
    """Run ``main(argv)`` and exit: never return into the fork server's loop (or, below
    it, the master's code)."""
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        for sig in (*_IGNORED, signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        os.environ[MASTER_ENV] = str(os.getppid())  # die_with_parent: the fork server
        main(argv)
        _join_threads()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
