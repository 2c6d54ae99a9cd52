"""Full-text search of the archives: an SQLite FTS5 index in ``SITE/state/archive-search.db``.

The index is derived data, whatever the store's backend (SQLite or PostgreSQL): made from
the archive index rows and the mbox files, caught up before every search and in the
background, and rebuilt from nothing if deleted (state/ is not backed up). Rows are the
archive index's ids, so a hit links straight to the message page.

A query is words; each is matched as a quoted FTS5 string (prefix match with a trailing
``*``), so FTS5's own syntax (``NEAR``, ``:``, ``-``) in a query is text, not an operator.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from postroom.lists import store
from postroom.site import Site
from postroom.store.models import ArchiveEntry, MailingList
from postroom.web.reading import from_mbox, plain_body

FILE = "archive-search.db"
BATCH = 500
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Hit:
    id: int
    subject: str
    author: str
    date: datetime
    snippet: str


def _open(site: Site) -> sqlite3.Connection:
    site.state_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(site.state_dir / FILE, timeout=10, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS posts USING fts5("
               "subject, author, body, list_id UNINDEXED, tokenize='unicode61 "
               "remove_diacritics 2')")
    return db


CATCH_UP_SECONDS = 2.0  # a search looks for new posts at most this often
_caught_up: dict[str, float] = {}


def catch_up(site: Site, *, if_older_than: float = 0.0) -> int:
    """Index the archived posts not indexed yet; how many were added. With
    ``if_older_than``, nothing is done when the last catch-up is that recent."""
    key = str(site.home)
    if if_older_than and time.monotonic() - _caught_up.get(key, -1e9) < if_older_than:
        return 0
    _caught_up[key] = time.monotonic()
    with _lock:
        db = _open(site)
        try:
            last = db.execute("SELECT coalesce(max(rowid), 0) FROM posts").fetchone()[0]
            added = 0
            while True:
                query = (select(ArchiveEntry.id, ArchiveEntry.list_id, ArchiveEntry.subject,
                                ArchiveEntry.author, ArchiveEntry.mbox_month,
                                ArchiveEntry.offset, ArchiveEntry.length, MailingList.name,
                                MailingList.domain)
                         .join(MailingList, MailingList.id == ArchiveEntry.list_id)
                         .where(ArchiveEntry.id > last).order_by(ArchiveEntry.id).limit(BATCH))
                rows: list[Any] = store.with_connection(site, _fetch(query))
                if not rows:
                    return added
                batch = []
                for r in rows:
                    path = site.home / "archives" / f"{r.name}@{r.domain}" / \
                        f"{r.mbox_month}.mbox"
                    try:
                        body = plain_body(from_mbox(path, r.offset, r.length))
                    except OSError:
                        body = ""
                    batch.append((r.id, r.subject, r.author, body, r.list_id))
                db.executemany("INSERT INTO posts(rowid, subject, author, body, list_id) "
                               "VALUES (?, ?, ?, ?, ?)", batch)
                db.commit()
                added += len(batch)
                last = rows[-1].id
        finally:
            db.close()


def _fetch(query: Any) -> Callable[[Connection], list[Any]]:
    def fetch(conn: Connection) -> list[Any]:
        return list(conn.execute(query).all())
    return fetch


def fts_query(text: str) -> str:
    words = re.findall(r"[\w@.'-]+\*?", text, flags=re.UNICODE)[:20]
    out = []
    for w in words:
        star = w.endswith("*")
        w = w.rstrip("*")
        if w:
            out.append('"' + w.replace('"', '""') + '"' + ("*" if star else ""))
    return " ".join(out)


COUNT_MAX = 1000  # "more than 1000": counting every match of a common word is slow


def search(site: Site, list_id: int, text: str, limit: int = 50,
           offset: int = 0) -> tuple[list[Hit], int]:
    """Posts of list ``list_id`` matching ``text``, newest first (an archive is read by
    date, and FTS5 gives rowid order without sorting); (page of hits, total up to
    COUNT_MAX + 1)."""
    query = fts_query(text)
    if not query:
        return [], 0
    catch_up(site, if_older_than=CATCH_UP_SECONDS)
    db = _open(site)
    try:
        total = db.execute("SELECT count(*) FROM (SELECT 1 FROM posts WHERE posts MATCH ? "
                           "AND list_id = ? LIMIT ?)",
                           (query, list_id, COUNT_MAX + 1)).fetchone()[0]
        rows = db.execute(
            "SELECT rowid, snippet(posts, 2, char(2), char(3), ' … ', 16) FROM posts "
            "WHERE posts MATCH ? AND list_id = ? ORDER BY rowid DESC LIMIT ? OFFSET ?",
            (query, list_id, limit, offset)).fetchall()
    except sqlite3.OperationalError:
        return [], 0
    finally:
        db.close()
    snippets = {r[0]: r[1] for r in rows}
    if not snippets:
        return [], int(total)
    entries = store.with_connection(site, lambda c: c.execute(
        select(ArchiveEntry.id, ArchiveEntry.subject, ArchiveEntry.author, ArchiveEntry.date)
        .where(ArchiveEntry.id.in_(list(snippets)))).all())
    by_id = {e.id: e for e in entries}
    hits = [Hit(i, by_id[i].subject, by_id[i].author, by_id[i].date, snippets[i])
            for i in snippets if i in by_id]
    return hits, int(total)


def index_path(site: Site) -> Path:
    return site.state_dir / FILE
