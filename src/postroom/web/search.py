"""Full-text search of the archives, in the store's own engine.

* **SQLite**: an FTS5 index in ``SITE/state/archive-search.db``, derived data: made from
  the archive index rows and the mbox files, and rebuilt from nothing if deleted (state/
  is not backed up).
* **PostgreSQL**: the ``archive_search`` table of the store (migration 0004): each post's
  plain body and its ``tsvector`` (``simple`` configuration: no stemming, like FTS5's
  unicode61) under a GIN index; the snippets are ``ts_headline``'s.

Either is caught up before a search (at most every ``CATCH_UP_SECONDS``) from the
archive index rows it has not seen; rows are the archive index's ids, so a hit links
straight to the message page, and hits come newest first (an archive is read by date).

A query is words; each is matched as a word (prefix match with a trailing ``*``), so
neither engine's own syntax (FTS5's ``NEAR``, ``:``, ``-``; tsquery's ``&``, ``!``) in a
query is anything but text. Both engines split text into words at anything that is not a
letter or digit (PostgreSQL is handed the text split so: its parser would keep an address
whole).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, select, text

from postroom.lists import store
from postroom.lists.listing import open_index, read_budget
from postroom.site import Site
from postroom.store.db import store_url
from postroom.store.models import ArchiveEntry, MailingList
from postroom.store.web_models import ArchiveSearch
from postroom.web.reading import from_mbox, plain_body

FILE = "archive-search.db"
BATCH = 500
COUNT_MAX = 1000  # "more than 1000": counting every match of a common word is slow
CATCH_UP_SECONDS = 2.0  # a search looks for new posts at most this often
DOCUMENT_MAX = 200_000  # characters of a post a tsvector is made of (its limit is 1 MB)
_lock = threading.Lock()
_caught_up: dict[str, float] = {}


class Hit(NamedTuple):  # a tuple: a page makes fifty, and a frozen dataclass costs 3x
    id: int
    subject: str
    author: str
    date: datetime
    snippet: str


def _postgres(site: Site) -> bool:
    return store_url(site).get_backend_name() == "postgresql"


def _open(site: Site) -> sqlite3.Connection:
    return open_index(index_path(site), "CREATE VIRTUAL TABLE IF NOT EXISTS posts USING "
                      "fts5(subject, author, body, list_id UNINDEXED, tokenize='unicode61 "
                      "remove_diacritics 2')")


def claim_catch_up(site: Site) -> bool:
    """Whether a catch-up is due (none for CATCH_UP_SECONDS); if so, the caller is to
    run it (``catch_up``) and the others are not. A caller in the event loop hands it
    to a thread, and the searches meanwhile read the index as it is."""
    key = str(site.home)
    if time.monotonic() - _caught_up.get(key, -1e9) < CATCH_UP_SECONDS:
        return False
    _caught_up[key] = time.monotonic()
    return True


def catch_up(site: Site, *, if_older_than: float = 0.0) -> int:
    """Index the archived posts not indexed yet; how many were added. With
    ``if_older_than``, nothing is done when the last catch-up is that recent."""
    key = str(site.home)
    if if_older_than and time.monotonic() - _caught_up.get(key, -1e9) < if_older_than:
        return 0
    _caught_up[key] = time.monotonic()
    with _lock:
        if _postgres(site):
            return _catch_up_postgres(site)
        db = _open(site)
        last = db.execute("SELECT coalesce(max(rowid), 0) FROM posts").fetchone()[0]
        added = 0
        while True:
            rows = _unindexed(site, last)
            if not rows:
                return added
            db.executemany("INSERT INTO posts(rowid, subject, author, body, list_id) "
                           "VALUES (?, ?, ?, ?, ?)",
                           [(r.id, r.subject, r.author, _body(site, r), r.list_id)
                            for r in rows])
            db.commit()
            added += len(rows)
            last = rows[-1].id


def _unindexed(site: Site, last: int) -> list[Any]:
    query = (select(ArchiveEntry.id, ArchiveEntry.list_id, ArchiveEntry.subject,
                    ArchiveEntry.author, ArchiveEntry.mbox_month, ArchiveEntry.offset,
                    ArchiveEntry.length, MailingList.name, MailingList.domain)
             .join(MailingList, MailingList.id == ArchiveEntry.list_id)
             .where(ArchiveEntry.id > last).order_by(ArchiveEntry.id).limit(BATCH))
    rows: list[Any] = store.with_connection(site, _fetch(query))
    return rows


def _body(site: Site, r: Any) -> str:
    path = site.home / "archives" / f"{r.name}@{r.domain}" / f"{r.mbox_month}.mbox"
    try:
        return plain_body(from_mbox(path, r.offset, r.length))
    except OSError:
        return ""


def _fetch(query: Any) -> Callable[[Connection], list[Any]]:
    def fetch(conn: Connection) -> list[Any]:
        return list(conn.execute(query).all())
    return fetch


def words_of(text: str) -> str:
    """``text`` as its words, one space apart: what PostgreSQL's tsvector is made of."""
    return " ".join(re.findall(r"\w+", text, flags=re.UNICODE))


_PG_INSERT = text(
    "INSERT INTO archive_search (id, list_id, body, document) VALUES (:id, :list_id, "
    ":body, to_tsvector('simple', :words)) ON CONFLICT (id) DO NOTHING")


def _catch_up_postgres(site: Site) -> int:
    def last_of(conn: Connection) -> int:
        return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM archive_search"))
                   .scalar_one())

    last = store.with_connection(site, last_of)
    added = 0
    while True:
        rows = _unindexed(site, last)
        if not rows:
            return added
        batch = []
        for r in rows:
            body = _body(site, r)
            batch.append({"id": r.id, "list_id": r.list_id, "body": body,
                          "words": words_of(f"{r.subject}\n{r.author}\n{body}")[
                              :DOCUMENT_MAX]})

        def put(conn: Connection, batch: list[dict[str, Any]] = batch) -> None:
            with conn.begin():
                conn.execute(_PG_INSERT, batch)

        store.with_connection(site, put)
        added += len(rows)
        last = rows[-1].id


def _query_words(text: str) -> list[tuple[str, bool]]:
    """(word, prefix?) of a query: at most 20 words, FTS5's tokens."""
    out = []
    for w in re.findall(r"[\w@.'-]+\*?", text, flags=re.UNICODE)[:20]:
        star = w.endswith("*")
        w = w.rstrip("*")
        if w:
            out.append((w, star))
    return out


def fts_query(text: str) -> str:
    out = []
    for w, star in _query_words(text):
        out.append('"' + w.replace('"', '""') + '"' + ("*" if star else ""))
    return " ".join(out)


def ts_query(text: str) -> str:
    """The query for PostgreSQL's ``to_tsquery``: every word (split as the documents
    were), ANDed; a trailing ``*`` makes the last part of a word a prefix."""
    terms = []
    for w, star in _query_words(text):
        parts = re.findall(r"\w+", w, flags=re.UNICODE)
        for i, part in enumerate(parts):
            prefix = ":*" if star and i == len(parts) - 1 else ""
            terms.append("'" + part.replace("'", "''").replace("\\", "\\\\") + "'" + prefix)
    return " & ".join(terms)


_ENTRIES = select(ArchiveEntry.id, ArchiveEntry.subject, ArchiveEntry.author,
                  ArchiveEntry.date).where(ArchiveEntry.id.in_(bindparam("ids", expanding=True)))


def search(site: Site, list_id: int, text: str, limit: int = 50, offset: int = 0, *,
           fresh: bool = True, quick: bool = False) -> tuple[list[Hit], int]:
    """Posts of list ``list_id`` matching ``text``, newest first; (page of hits, total up
    to COUNT_MAX + 1). ``fresh``: catch the index up first if that is due; without it,
    the caller sees to that (``claim_catch_up``). ``quick`` (SQLite): raise WouldWait
    when the index's reads take longer than ``listing.QUICK_SECONDS``."""
    if _postgres(site):
        query = ts_query(text)
        if not query:
            return [], 0
        if fresh:
            catch_up(site, if_older_than=CATCH_UP_SECONDS)
        snippets, total = store.with_connection(
            site, lambda c: _search_postgres(c, list_id, query, limit, offset))
    else:
        query = fts_query(text)
        if not query:
            return [], 0
        if fresh:
            catch_up(site, if_older_than=CATCH_UP_SECONDS)
        db = _open(site)
        try:
            with read_budget(db, quick):
                snippets, total = _search_sqlite(db, list_id, query, limit, offset)
        except sqlite3.OperationalError:
            return [], 0
    if not snippets:
        return [], int(total)
    by_id = store.with_connection(site, lambda c: _entries(c, list(snippets)))
    hits = []
    for i, snippet in snippets.items():
        if i in by_id:
            subject, author, date = by_id[i]
            hits.append(Hit(i, subject, author, date, snippet))
    return hits, int(total)


def _entries(conn: Connection, ids: list[int]) -> dict[int, tuple[str, str, datetime]]:
    """id -> (subject, author, date) of the archive rows ``ids`` (a row gone from the
    store is not a hit). On SQLite through the driver: SQLAlchemy's expanding IN and
    result rows cost twice the read itself, and this is a search page's hot path."""
    if conn.dialect.name == "sqlite":
        sql = f"SELECT id, subject, author, date FROM {ArchiveEntry.__tablename__} " \
              f"WHERE id IN ({','.join('?' * len(ids))})"
        raw: Any = conn.connection.driver_connection
        try:
            return {r[0]: (r[1], r[2], datetime.fromisoformat(r[3]))
                    for r in raw.execute(sql, ids).fetchall()}
        except (sqlite3.Error, ValueError):
            pass  # SQLAlchemy's read below says what is wrong, as every store read does
    return {r.id: (r.subject, r.author, r.date) for r in conn.execute(_ENTRIES, {"ids": ids})}


_counts = threading.local()  # this thread's (connection, index state, {(list, query): n})
_COUNTS_MAX = 1000


def _count_sqlite(db: sqlite3.Connection, list_id: int, query: str) -> int:
    """The matches of ``query``, up to COUNT_MAX + 1, kept while the index stays as it
    was: a common word's count reads a thousand rows, most of a search's work, and the
    next page of the same search asks again. ``data_version`` moves when another
    connection (another process) commits to the file, ``total_changes`` when this one
    does, so a kept count is never stale."""
    state = (db.execute("PRAGMA data_version").fetchone()[0], db.total_changes)
    kept = getattr(_counts, "kept", None)
    if kept is None or kept[0] is not db or kept[1] != state:
        kept = _counts.kept = (db, state, {})
    counts: dict[tuple[int, str], int] = kept[2]
    total = counts.get((list_id, query))
    if total is None:
        total = int(db.execute("SELECT count(*) FROM (SELECT 1 FROM posts WHERE posts MATCH ? "
                               "AND list_id = ? LIMIT ?)",
                               (query, list_id, COUNT_MAX + 1)).fetchone()[0])
        if len(counts) < _COUNTS_MAX:
            counts[(list_id, query)] = total
    return total


def _search_sqlite(db: sqlite3.Connection, list_id: int, query: str, limit: int,
                   offset: int) -> tuple[dict[int, str], int]:
    """FTS5 gives rowid order without sorting; the count stops at COUNT_MAX + 1."""
    total = _count_sqlite(db, list_id, query)
    rows = db.execute(
        "SELECT rowid, snippet(posts, 2, char(2), char(3), ' … ', 16) FROM posts "
        "WHERE posts MATCH ? AND list_id = ? ORDER BY rowid DESC LIMIT ? OFFSET ?",
        (query, list_id, limit, offset)).fetchall()
    return {r[0]: r[1] for r in rows}, int(total)


_HEADLINE = ("StartSel=\x02, StopSel=\x03, MaxWords=16, MinWords=6, MaxFragments=2, "
             "FragmentDelimiter=\" … \"")


def _search_postgres(conn: Connection, list_id: int, query: str, limit: int,
                     offset: int) -> tuple[dict[int, str], int]:
    """The GIN index finds the posts; the headline is made for the page's posts only."""
    table = ArchiveSearch.__tablename__
    params = {"q": query, "list_id": list_id, "limit": limit, "offset": offset,
              "n": COUNT_MAX + 1, "opts": _HEADLINE}
    total = conn.execute(text(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE document @@ "
        "to_tsquery('simple', :q) AND list_id = :list_id LIMIT :n) AS found"),
        params).scalar_one()
    rows = conn.execute(text(
        "SELECT page.id, ts_headline('simple', page.body, to_tsquery('simple', :q), :opts) "
        f"FROM (SELECT id, body FROM {table} WHERE document @@ to_tsquery('simple', :q) "
        "AND list_id = :list_id ORDER BY id DESC LIMIT :limit OFFSET :offset) AS page "
        "ORDER BY page.id DESC"), params).all()
    return {int(r[0]): str(r[1]) for r in rows}, int(total)


def index_path(site: Site) -> Path:
    return site.state_dir / FILE
