"""The ``file`` courier: append to an mbox file (an alias target ``/path/to/file``).

Each message is written as one mboxrd entry: a ``From sender date`` line, a
``Return-Path:`` header, the message with LF line endings and every line that matches
``^>*From `` given one more ``>``, then a blank line. The file is locked with
``fcntl.lockf`` (POSIX record locks, which also work over NFS and are what mail readers
take) while appending, plus a per-path lock inside this process, because POSIX locks do not
exclude threads of the same process. The write is fsynced before the attempt is SENT; a
failed write is cut back off, so the file never keeps half a message.

Outcomes: the path being a directory or not absolute is a mistake in the alias the mail
cannot wait out: FAILED 5.2.0 naming the path. The parent directory missing (an unmounted
disk, a directory not made yet) is DEFERRED 4.3.0 "mailbox directory ... does not exist",
with a ``warning:`` line in the mail log naming it: the mail waits in the queue until the
directory is there, and the file is never made somewhere else. A lock held longer than
``lock_timeout`` is DEFERRED 4.2.0; other disk trouble DEFERRED 4.3.0.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import re
import threading
import time
from pathlib import Path

from postroom import maillog, safeio
from postroom.delivery.local import unix_lines
from postroom.envelope import Delivery
from postroom.site import Site
from postroom.types import Attempt, Job, deferred, describe, failed, sent

log = logging.getLogger(__name__)

_FROM = re.compile(rb"^(>*From )", re.MULTILINE)


class MailboxLocked(Exception):
    pass


def mbox_entry(sender: str, message: bytes, when: float | None = None) -> bytes:
    """One mboxrd entry (From_ line, Return-Path, escaped body, blank line)."""
    who = "".join("_" if c.isspace() else c for c in sender) or "MAILER-DAEMON"
    date = time.asctime(time.localtime(when))
    body = f"Return-Path: <{sender}>\n".encode("utf-8", "surrogateescape") \
        + unix_lines(message)
    body = _FROM.sub(rb">\1", body)
    if not body.endswith(b"\n"):
        body += b"\n"
    return f"From {who} {date}\n".encode("utf-8", "surrogateescape") + body + b"\n"


class FileCourier:
    def __init__(self, site: Site | None = None, *, lock_timeout: float = 60.0) -> None:
        self.lock_timeout = lock_timeout
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    async def deliver(self, job: Job) -> list[Attempt]:
        return [await asyncio.to_thread(self._deliver_one, job, d) for d in job.deliveries]

    def _deliver_one(self, job: Job, delivery: Delivery) -> Attempt:
        path = Path(delivery.user)
        if not path.is_absolute():
            return failed(delivery, f"file target {delivery.user!r} is not an absolute path",
                          status="5.2.0")
        try:
            self.append(path, mbox_entry(job.envelope.sender, job.message))
        except MailboxLocked:
            return deferred(delivery, f"{path} is locked by another process", status="4.2.0")
        except (FileNotFoundError, NotADirectoryError):
            if not path.parent.is_dir():
                return _no_directory(job, delivery, path)
            return deferred(delivery, f"cannot append to {path}: it vanished while writing")
        except IsADirectoryError:
            return failed(delivery, f"cannot append to {path}: it is a directory",
                          status="5.2.0")
        except OSError as e:
            log.warning("%s: append to %s failed: %s", job.queue_id, path, e)
            status = "4.2.2" if e.errno == errno.EDQUOT else "4.3.0"
            return deferred(delivery, f"cannot append to {path}: {e.strerror or describe(e)}",
                            status=status)
        except Exception as e:  # unexpected: temporary, never a bounce
            log.exception("%s: append to %s failed", job.queue_id, path)
            return deferred(delivery, f"internal error: {describe(e)}")
        return sent(delivery, f"appended to {path}")

    def _thread_lock(self, path: Path) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(os.path.abspath(path), threading.Lock())

    def append(self, path: Path, entry: bytes) -> None:
        """Append one entry under lock, fsync; on failure truncate back to where it was."""
        deadline = time.monotonic() + self.lock_timeout
        lock = self._thread_lock(path)
        if not lock.acquire(timeout=self.lock_timeout):
            raise MailboxLocked(str(path))
        try:
            # O_RDWR: the tail is read through this descriptor, because closing any other
            # descriptor of the file would drop this process's lockf lock
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                _lockf(fd, deadline)
                start = os.fstat(fd).st_size
                entry = _separator(os.pread(fd, 2, max(0, start - 2)) if start else b"") + entry
                try:
                    safeio.write_and_fsync(fd, entry, path)
                except BaseException:
                    os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)  # also releases the lockf lock
        finally:
            lock.release()

    async def aclose(self) -> None:
        return None


def _no_directory(job: Job, delivery: Delivery, path: Path) -> Attempt:
    """The target's directory is missing: keep the mail, and say so loudly."""
    text = f"mailbox directory {path.parent} does not exist (cannot append to {path})"
    log.warning("%s: append to %s deferred: %s", job.queue_id, path, text)
    maillog.line(f"warning: {job.queue_id}: file delivery deferred: {text} (an unmounted "
                 "disk? mount it, or create the directory, or fix the alias; the mail "
                 "waits in the queue)")
    return deferred(delivery, text, code=451, status="4.3.0")


def _separator(tail: bytes) -> bytes:
    """Newlines to put first so the new From_ line follows a blank line (or starts the file)."""
    if not tail or tail.endswith(b"\n\n"):
        return b""
    return b"\n" if tail.endswith(b"\n") else b"\n\n"


def _lockf(fd: int, deadline: float) -> None:
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise
        if time.monotonic() >= deadline:
            raise MailboxLocked("lock timeout")
        time.sleep(0.05)
