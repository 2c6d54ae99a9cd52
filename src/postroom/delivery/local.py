"""The ``local`` courier: Maildir delivery to ``SITE/mail/USER/``.

Each message gets ``Return-Path: <sender>`` and ``Delivered-To: user@<primary domain>`` on
top and LF line endings, and is written the Maildir way: a unique file in ``tmp/``, written
and fsynced, renamed into ``new/``, and ``new/`` fsynced, so concurrent writers never meet
and a crash never leaves half a message in ``new/``. Only then is the attempt SENT. The
layout is the one ``mailbox.Maildir`` reads; it is written here rather than with
``Maildir.add`` because that does not fsync.

The resolver has already decided the user exists; a name that could leave the mail
directory is FAILED (5.1.3). Disk trouble is DEFERRED (4.3.0; 4.2.2 over quota).

A user's Maildir is made on the first delivery, but the mail directory itself
(``SITE/mail``, which ``postroom init`` makes) never is: when it is missing (an unmounted
disk, a wrong symlink, an operator's slip) every delivery is DEFERRED 4.3.0 "mailbox
directory ... does not exist" and the mail log gets a ``warning:`` line naming it, so the
mail waits in the queue until the directory is back instead of bouncing or landing on the
wrong disk.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import socket
import time
from pathlib import Path

from postroom import maillog, safeio
from postroom.envelope import Delivery
from postroom.site import Site
from postroom.types import Attempt, Job, deferred, describe, failed, sent

log = logging.getLogger(__name__)

_counter = itertools.count(1)
_SUBDIRS = ("tmp", "new", "cur")


def trace_headers(sender: str, delivered_to: str) -> bytes:
    """``Return-Path`` and ``Delivered-To`` lines, LF-terminated, for local deliveries."""
    return f"Return-Path: <{sender}>\nDelivered-To: {delivered_to}\n".encode(
        "utf-8", "surrogateescape")


def unix_lines(message: bytes) -> bytes:
    """CRLF (the queue's form) to LF (the form of files and pipes on this system)."""
    return message.replace(b"\r\n", b"\n")


def safe_mailbox_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\0" not in name and not name.startswith(".")


def _unique_name(size: int) -> str:
    now = time.time()
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    # microseconds zero-padded: names of one second sort in the order of delivery
    return (f"{int(now)}.M{int(now % 1 * 1e6):06d}P{os.getpid()}Q{next(_counter)}.{host}"
            f",S={size}")


def _mkdir(path: Path) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not path.is_dir():
            raise


def store(maildir: Path, data: bytes) -> Path:
    """Write ``data`` into ``maildir/new`` durably; create the Maildir if needed (but never
    its parent: FileNotFoundError when that is missing)."""
    if not (maildir / "new").is_dir():
        _mkdir(maildir)
        for sub in _SUBDIRS:
            _mkdir(maildir / sub)
        safeio.fsync_dir(maildir)
        safeio.fsync_dir(maildir.parent)
    name = _unique_name(len(data))
    tmp, new = maildir / "tmp" / name, maildir / "new" / name
    # tmp/NAME created exclusively, written, fsynced, renamed into new/, new/ fsynced
    safeio.publish(tmp, new, data)
    return new


class LocalCourier:
    def __init__(self, site: Site) -> None:
        self.mail_dir = site.mail_dir
        self.domain = site.profile.site.domains[0]

    async def deliver(self, job: Job) -> list[Attempt]:
        return [await asyncio.to_thread(self._deliver_one, job, d) for d in job.deliveries]

    def _deliver_one(self, job: Job, delivery: Delivery) -> Attempt:
        user = delivery.user
        if not safe_mailbox_name(user):
            return failed(delivery, f"bad mailbox name {user!r}", code=550, status="5.1.3")
        if not self.mail_dir.is_dir():
            return self._no_mail_dir(job, delivery)
        data = trace_headers(job.envelope.sender, f"{user}@{self.domain}") \
            + unix_lines(job.message)
        try:
            path = store(self.mail_dir / user, data)
        except OSError as e:
            if not self.mail_dir.is_dir():  # it went away while we wrote
                return self._no_mail_dir(job, delivery)
            status = "4.2.2" if e.errno == errno.EDQUOT else "4.3.0"
            log.warning("%s: maildir delivery to %s failed: %s", job.queue_id, user, e)
            return deferred(delivery, f"cannot write to mailbox {user}: {describe(e)}",
                            code=452 if status == "4.2.2" else 451, status=status)
        except Exception as e:  # unexpected: temporary, never a bounce
            log.exception("%s: maildir delivery to %s failed", job.queue_id, user)
            return deferred(delivery, f"internal error: {describe(e)}")
        return sent(delivery, f"delivered to maildir {user} ({path.name})")

    def _no_mail_dir(self, job: Job, delivery: Delivery) -> Attempt:
        """The mail directory is missing: keep the mail, and say so loudly."""
        text = f"mailbox directory {self.mail_dir} does not exist"
        log.warning("%s: maildir delivery to %s deferred: %s", job.queue_id, delivery.user,
                    text)
        maillog.line(f"warning: {job.queue_id}: maildir delivery to {delivery.user} "
                     f"deferred: {text} (an unmounted disk? mount it, or create it "
                     "owned by the server's user; the mail waits in the queue)")
        return deferred(delivery, text, code=451, status="4.3.0")

    async def aclose(self) -> None:
        return None
