"""The ``prog`` courier: pipe the message into a command (an alias ``"|/path/cmd args"``).

How the command runs:

- The route user is the alias target as written, ``"|/var/mailman/mail/mailman post x"``.
  A command with shell metacharacters (``| & ; < > ( ) $ ` \\ * ? [ ] { } ~ # !``, quotes
  or newlines, or a ``NAME=value`` first word) runs under ``/bin/sh -c``, the way sendmail
  runs every prog delivery; anything else is split with ``shlex`` and executed directly,
  with no shell in between.
- The environment is minimal: ``PATH=/usr/bin:/bin``, ``HOME`` (the site home), ``SHELL``,
  ``SENDER``, ``RECIPIENT`` (the RCPT TO that led here), ``QUEUE_ID``. The working
  directory is the site home; the command runs as the server's user.
- stdin is the message with ``Return-Path:`` and ``Delivered-To:`` on top and LF line
  endings. stdout and stderr are collected (the first KB is kept for the failure text).
- After ``[delivery] prog_timeout`` the whole process group is killed: DEFERRED 4.4.7.

The exit status follows sendmail's contract (``sysexits.h``)::

    0                       SENT      250 2.0.0
    75 EX_TEMPFAIL          DEFERRED  451 4.3.0
    71 EX_OSERR, 73 EX_CANTCREAT, 74 EX_IOERR
                            DEFERRED  451 4.3.0  (the system's trouble, not the mail's)
    67 EX_NOUSER            FAILED    550 5.1.1
    68 EX_NOHOST            FAILED    550 5.1.2
    any other               FAILED    554 5.3.0  with the start of the command's output
    killed by a signal      DEFERRED  451 4.3.0
    not found / not executable   FAILED  554 5.3.0  (as sh's 127 / 126 would be)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shlex
import signal

from postroom.delivery.list import ListCourier, ListHandler
from postroom.delivery.local import trace_headers, unix_lines
from postroom.envelope import Delivery
from postroom.errors import EX_CANTCREAT, EX_IOERR, EX_NOUSER, EX_OSERR, EX_TEMPFAIL
from postroom.site import Site
from postroom.types import Attempt, Job, deferred, describe, failed, sent

log = logging.getLogger(__name__)

EX_NOHOST = 68
OUTPUT_LIMIT = 1024
SHELL_META = frozenset("|&;<>()$`\\*?[]{}~#!'\"\n")
_TEMPORARY = {EX_TEMPFAIL, EX_OSERR, EX_CANTCREAT, EX_IOERR}
_CANNOT_EXEC = {errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.EISDIR, errno.ENOTDIR}


def command_of(user: str) -> str:
    """``"|/usr/bin/cmd arg"`` -> ``/usr/bin/cmd arg``."""
    text = user.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    return text.removeprefix("|").strip()


def argv_of(command: str) -> list[str]:
    """The argv to execute: direct when the command is plain, else ``/bin/sh -c``."""
    words = command.split()
    needs_shell = any(c in SHELL_META for c in command) or (bool(words) and "=" in words[0])
    if needs_shell:
        return ["/bin/sh", "-c", command]
    return shlex.split(command)


# Sites migrating from sendmail keep their Mailman pipe aliases: these commands are not
# run but handed to postroom's list engine (``verify`` still prints them as written).
_MAILMAN = re.compile(r"^(?:\S*/)?(?:mailman|postroom)\s+"
                      r"(post|admin|bounces|request|owner|join|leave|confirm)\s+(\S+)$")
_SERVICE = {"post": "", "admin": "-bounces", "bounces": "-bounces", "request": "-request",
            "owner": "-owner", "join": "-join", "leave": "-leave", "confirm": "-confirm"}


def mailman_list(command: str) -> str | None:
    """``LIST-service`` for a Mailman (or ``postroom post``) pipe command, else None."""
    m = _MAILMAN.match(command.strip())
    return f"{m.group(2).lower()}{_SERVICE[m.group(1)]}" if m else None


class ProgCourier:
    def __init__(self, site: Site, list_handler: ListHandler | None = None) -> None:
        self.home = site.home
        self.domain = site.profile.site.domains[0]
        self.timeout = site.profile.delivery.prog_timeout
        self.lists = ListCourier(list_handler)

    async def deliver(self, job: Job) -> list[Attempt]:
        attempts = []
        for d in job.deliveries:
            listed = mailman_list(command_of(d.user))
            if listed is not None:  # "LIST-service" with no domain: the engine finds it
                attempts.append(await self.lists.deliver_to(job, d, listed))
                continue
            try:
                attempts.append(await self._run(job, d))
            except Exception as e:  # unexpected: temporary, never a bounce
                log.exception("%s: prog delivery %s failed", job.queue_id, d.user)
                attempts.append(deferred(d, f"internal error: {describe(e)}"))
        return attempts

    async def _run(self, job: Job, delivery: Delivery) -> Attempt:
        command = command_of(delivery.user)
        if not command:
            return failed(delivery, "empty command", code=554, status="5.3.0")
        argv = argv_of(command)
        recipient = job.original_recipient(delivery)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "SHELL": "/bin/sh",
               "SENDER": job.envelope.sender, "RECIPIENT": recipient,
               "QUEUE_ID": job.queue_id}
        stdin = trace_headers(job.envelope.sender, _delivered_to(recipient, self.domain)) \
            + unix_lines(job.message)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, cwd=self.home, env=env,
                start_new_session=True)
        except OSError as e:
            reason = f"cannot run {argv[0]}: {e.strerror or describe(e)}"
            if e.errno in _CANNOT_EXEC:  # a wrong alias, like sh's exit 126/127
                return failed(delivery, reason, code=554, status="5.3.0")
            return deferred(delivery, reason)  # fork/pipe trouble: the system's, not the mail's
        try:
            output = await asyncio.wait_for(_exchange(proc, stdin), self.timeout)
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            return deferred(delivery, f"command timed out after {self.timeout:g}s: {command}",
                            code=451, status="4.4.7")
        except BaseException:
            _kill_group(proc)
            await proc.wait()
            raise
        return _verdict(delivery, proc.returncode, output, command)

    async def aclose(self) -> None:
        return None


def _delivered_to(recipient: str, domain: str) -> str:
    return recipient if "@" in recipient else f"{recipient}@{domain}"


async def _exchange(proc: asyncio.subprocess.Process, stdin: bytes) -> bytes:
    """Feed stdin, keep the first OUTPUT_LIMIT bytes of output, wait for the exit."""
    assert proc.stdin is not None and proc.stdout is not None

    async def feed() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin)
            await proc.stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.close()
            await proc.stdin.wait_closed()

    async def collect() -> bytes:
        assert proc.stdout is not None
        kept = b""
        while chunk := await proc.stdout.read(65536):
            if len(kept) < OUTPUT_LIMIT:
                kept += chunk[: OUTPUT_LIMIT - len(kept)]
        return kept

    _, output = await asyncio.gather(feed(), collect())
    await proc.wait()
    return output


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _verdict(delivery: Delivery, status: int | None, output: bytes, command: str) -> Attempt:
    said = " ".join(output.decode("utf-8", "replace").split())
    said = f": {said}" if said else ""
    if status == 0:
        return sent(delivery, f"delivered to command: {command}")
    if status is None or status < 0:
        name = _signal_name(-status) if status else "a signal"
        return deferred(delivery, f"command died with {name}{said}")
    if status in _TEMPORARY:
        return deferred(delivery, f"command exited {status} (temporary failure){said}")
    if status == EX_NOUSER:
        return failed(delivery, f"command exited {status} (no such user){said}",
                      code=550, status="5.1.1")
    if status == EX_NOHOST:
        return failed(delivery, f"command exited {status} (no such host){said}",
                      code=550, status="5.1.2")
    return failed(delivery, f"command exited {status}{said}", code=554, status="5.3.0")

