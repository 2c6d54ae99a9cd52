"""The archive of a list: every accepted post appended to a per-month mbox in
``SITE/archives/LIST/YYYY-MM.mbox`` (what Pipermail kept, readable by any mail tool), and
one index row per post in the store (message-id, date, author, subject, thread parent,
where it is in the mbox) for the web pages and search."""

from __future__ import annotations

import email.utils
import fcntl
import os
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import insert

from postroom import safeio
from postroom.lists.model import ArchivePolicy, ListSettings
from postroom.lists.store import list_id_of, with_connection
from postroom.site import Site
from postroom.store.models import ArchiveEntry


def mbox_path(site: Site, settings: ListSettings, month: str) -> Path:
    return site.home / "archives" / settings.address / f"{month}.mbox"


def from_line(sender: str, when: datetime) -> bytes:
    return f"From {sender or 'MAILER-DAEMON'} {when.strftime('%a %b %d %H:%M:%S %Y')}\n".encode()


def mboxrd(message: bytes) -> bytes:
    """The message with LF line ends and ``>``-quoted From lines (mboxrd)."""
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    out = [b">" + line if line.lstrip(b">").startswith(b"From ") else line for line in lines]
    text = b"\n".join(out)
    return text if text.endswith(b"\n") else text + b"\n"


def archive(site: Site, settings: ListSettings, message: EmailMessage, raw: bytes,
            sender: str, now: datetime | None = None) -> int | None:
    """Append an accepted post; returns its index row ID (None when the list keeps no
    archive). The mbox append is durable (fsync) before the row is written."""
    if settings.archive_policy is ArchivePolicy.NONE:
        return None
    when = now or datetime.now(UTC)
    month = when.strftime("%Y-%m")
    path = mbox_path(site, settings, month)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = from_line(sender, when) + mboxrd(raw) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # several processes may archive at once
        offset = os.lseek(fd, 0, os.SEEK_END)
        safeio.write_and_fsync(fd, entry, path)
    finally:
        os.close(fd)
    try:
        date = email.utils.parsedate_to_datetime(str(message["Date"])) if message["Date"] \
            else when
    except (TypeError, ValueError, IndexError):  # a Date nobody can read: when it came
        date = when
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    parent = (message.get("In-Reply-To") or "").strip() or None
    row = {"message_id": (message.get("Message-ID") or "").strip()[:255],
           "date": date, "author": str(message.get("From") or ""),
           "subject": str(message.get("Subject") or "")[:998],
           "parent_message_id": parent[:255] if parent else None,
           "mbox_month": month, "offset": offset, "length": len(entry)}

    def work(conn: object) -> int:
        from sqlalchemy.engine import Connection

        assert isinstance(conn, Connection)
        list_id = list_id_of(conn, settings.name, settings.domain)
        result = conn.execute(insert(ArchiveEntry).values(list_id=list_id, **row))
        conn.commit()
        key = result.inserted_primary_key
        return int(key[0]) if key else 0

    return int(with_connection(site, work))
