"""Members page by page (``postroom members list``, the web's members page and the API),
fast at 100,000 members.

* **Keyset pages.** A page starts after the last address of the page before (``after``)
  or ends before the first address of the page after (``before``), so every page is one
  range read of the ``(list_id, address)`` unique index, however deep. ``page=N``
  (an OFFSET) still works, for old links and the command line.
* **Counts kept, not counted.** The total comes from ``list_counters``, kept by
  triggers on ``list_members`` (migration 0004): one row, not a count of 100,000.
* **Search by an index.** "Address or name contains TEXT" is a substring match, which no
  B-tree serves. With ``indexed=True`` (the web) a search of three characters or more
  reads an SQLite FTS5 trigram index in ``SITE/state/member-search.db``: one table per
  list, its rowids the members' positions in address order, so the index hands out hits
  already in page order and a keyset page is a rowid range. It is derived data, like the
  archive search: rebuilt (about 1 s for 100,000 members) by the first search after the
  list's ``changes`` counter moved, whatever the store's backend; deleted, it is made
  again. Shorter searches, the command line (whose user may not own ``state/``) and any
  trouble with the index file fall back to a scan with LIKE, which is always right.
  A search's count stops at ``COUNT_MAX`` + 1 ("more than 1,000"). With ``quick=True``
  a search that would rebuild the index or scan, or that reads its index for longer than
  ``QUICK_SECONDS``, raises ``WouldWait`` instead, so that a caller in an event loop can
  hand it to a thread (``web.admin.members``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.engine import Connection

from postroom.lists.model import Member
from postroom.lists.store import MEMBER_COLUMNS, list_id_of, member_of, with_connection
from postroom.store.db import driver_rows
from postroom.store.models import ListMember, MailingList
from postroom.store.web_models import ListCounter

if TYPE_CHECKING:
    from pathlib import Path

    from postroom.site import Site

COUNT_MAX = 1000       # a search counts its matches up to this (+1 means "more")
QUICK_SECONDS = 0.005  # a quick search's reads of its index, at most (then: WouldWait)
QUICK_STEPS = 1000     # SQLite VM steps between two looks at the clock
INDEX_FILE = "member-search.db"
MIN_INDEXED = 3        # a trigram index cannot find shorter strings


class WouldWait(Exception):
    """A search asked to be quick would first rebuild its index, scan the store, or read
    its index for longer than QUICK_SECONDS."""


@contextmanager
def read_budget(db: sqlite3.Connection, quick: bool) -> Iterator[None]:
    """With ``quick``, the statements run inside are interrupted once QUICK_SECONDS have
    passed, and WouldWait is raised: a query's cost depends on the words asked for (a
    word common in other lists' posts is read through), not only on the page's size."""
    if not quick:
        yield
        return
    deadline = time.perf_counter() + QUICK_SECONDS
    db.set_progress_handler(lambda: time.perf_counter() > deadline, QUICK_STEPS)
    try:
        yield
    except sqlite3.OperationalError as e:
        if str(e) == "interrupted":
            raise WouldWait("a search longer than QUICK_SECONDS") from e
        raise
    finally:
        db.set_progress_handler(None, 0)


@dataclass(frozen=True, slots=True)
class MemberPage:
    total: int          # members matching (all pages); a search stops at COUNT_MAX + 1
    page: int           # the page number asked for; 0 when reached by after/before
    per_page: int
    members: list[Member]
    has_next: bool = False
    has_previous: bool = False
    capped: bool = False  # total is a lower bound

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def next_after(self) -> str:
        """The ``after`` of the next page ("" if there is none)."""
        return self.members[-1].address if self.has_next and self.members else ""

    @property
    def previous_before(self) -> str:
        """The ``before`` of the previous page ("" if there is none)."""
        return self.members[0].address if self.has_previous and self.members else ""


# statements built once (see lists.store: building one costs more than running it)
_COUNTS = select(ListCounter.members, ListCounter.changes).where(
    ListCounter.list_id == bindparam("list_id"))
_LIST_AND_COUNT = (select(MailingList.id, ListCounter.members)
                   .outerjoin(ListCounter, ListCounter.list_id == MailingList.id)
                   .where(MailingList.name == bindparam("name"),
                          MailingList.domain == bindparam("domain")))
_LIST_AND_CHANGES = (select(MailingList.id, ListCounter.changes)
                     .outerjoin(ListCounter, ListCounter.list_id == MailingList.id)
                     .where(MailingList.name == bindparam("name"),
                            MailingList.domain == bindparam("domain")))
_PAGE = select(*MEMBER_COLUMNS).where(ListMember.list_id == bindparam("list_id"))


@dataclass(frozen=True, slots=True)
class _Pages:
    """The three reads of a page of ``base`` (bind parameters ``mark``, ``limit`` and
    ``offset``): after an address, before one, or by an OFFSET."""
    after: Any
    before: Any
    offset: Any

    @classmethod
    def of(cls, base: Any) -> _Pages:
        limit: Any = bindparam("limit")
        return cls(base.where(ListMember.address > bindparam("mark"))
                   .order_by(ListMember.address).limit(limit),
                   base.where(ListMember.address < bindparam("mark"))
                   .order_by(ListMember.address.desc()).limit(limit),
                   base.order_by(ListMember.address).limit(limit).offset(bindparam("offset")))


_WHOLE_LIST = _Pages.of(_PAGE)  # the members page without a search: built once
_BY_ADDRESS = (_PAGE.where(ListMember.address.in_(bindparam("addresses", expanding=True)))
               .order_by(ListMember.address))


def member_counts(conn: Connection, list_id: int) -> tuple[int, int]:
    """(members, changes) of a list, from the row the triggers keep."""
    row = conn.execute(_COUNTS, {"list_id": list_id}).first()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def page_members(site: Site, name: str, domain: str, page: int = 1, per_page: int = 100,
                 search: str = "", *, after: str = "", before: str = "",
                 indexed: bool = False, quick: bool = False) -> MemberPage:
    """A page of the members in address order, optionally those whose address or name
    contains ``search`` (case-insensitive): the one after address ``after``, the one
    before address ``before``, else page ``page`` (from 1). ``indexed``: search with the
    trigram index in ``state/`` (see the module's doc); ``quick``: raise WouldWait rather
    than rebuild the index or scan for ``search``."""
    search = search.strip()
    if indexed and len(search) >= MIN_INDEXED:
        try:
            found = _index_page(site, name, domain, page, per_page, search, after, before,
                                quick)
        except (sqlite3.Error, OSError):
            found = None  # the index file is not ours to write, or broken: scan instead
        if found is not None:
            return found
    if search and quick:
        raise WouldWait(search)

    def work(conn: Connection) -> MemberPage:
        list_id, count = _list_and_count(conn, name, domain)
        pages = _WHOLE_LIST  # built once; a search's statements are built here
        if search:
            where: list[Any] = [ListMember.list_id == list_id, _contains(search)]
            pages = _Pages.of(_PAGE.where(where[-1]))
        rows, has_next, has_previous = _keyset(conn, pages, list_id, page, per_page, after,
                                               before)
        capped = False
        if not search:
            total = count
        elif indexed:  # short searches of the web: counted only so far
            total = int(conn.scalar(select(func.count()).select_from(
                select(ListMember.id).where(*where).limit(COUNT_MAX + 1).subquery())) or 0)
            capped = total > COUNT_MAX
        else:
            total = int(conn.scalar(select(func.count()).select_from(ListMember)
                                    .where(*where)) or 0)
        return MemberPage(total, 0 if after or before else page, per_page,
                          [member_of(r) for r in rows], has_next, has_previous, capped)

    out: MemberPage = with_connection(site, work)
    return out


def _list_and_count(conn: Connection, name: str, domain: str) -> tuple[int, int]:
    """(list id, members) in one read; UnknownList if there is no such list."""
    rows = driver_rows(conn, _LIST_AND_COUNT, {"name": name, "domain": domain})
    row = rows[0] if rows else None
    if row is None:
        list_id_of(conn, name, domain)  # raises the store's own UnknownList
    assert row is not None
    return int(row[0]), int(row[1] or 0)


def _contains(search: str) -> Any:
    pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%") \
        .replace("_", "\\_") + "%"
    return or_(ListMember.address.like(pattern, escape="\\"),
               func.lower(ListMember.display_name).like(pattern, escape="\\"))


def _rows(conn: Connection, statement: Any, values: dict[str, Any]) -> list[Any]:
    return list(conn.execute(statement, values).all())


def _keyset(conn: Connection, pages: _Pages, list_id: int, page: int, per_page: int,
            after: str, before: str) -> tuple[list[Any], bool, bool]:
    """(rows, has next page, has previous page) of one page read from the store."""
    values: dict[str, Any] = {"list_id": list_id, "limit": per_page + 1}
    read = driver_rows if pages is _WHOLE_LIST else _rows  # a search's: built per call
    # a page after (before) an address has one before (after) it: the reader came from
    # there; asking the store costs a query per page and would only differ when that
    # page's members have all left since
    if after:
        rows = read(conn, pages.after, {**values, "mark": after})
        return rows[:per_page], len(rows) > per_page, True
    if before:
        rows = read(conn, pages.before, {**values, "mark": before})
        return rows[:per_page][::-1], True, len(rows) > per_page
    page = max(1, page)
    rows = list(conn.execute(pages.offset, {**values, "offset": (page - 1) * per_page}).all())
    return rows[:per_page], len(rows) > per_page, page > 1


# -- the trigram index ------------------------------------------------------------------------

_local = threading.local()
_build_lock = threading.Lock()


def index_path(site: Site) -> Path:
    return site.state_dir / INDEX_FILE


def open_index(path: Path, *setup: str,
               isolation_level: Literal["DEFERRED"] | None = "DEFERRED") -> sqlite3.Connection:
    """This thread's connection to the SQLite file of a derived index (the member search
    here, the archive search in ``postroom.web``), with WAL and ``setup`` run when it is
    opened: one per thread and process, since opening it and checking its tables cost
    more than a search. A file deleted (or replaced) meanwhile is opened again, so an
    index made again from nothing is seen at once."""
    key = (os.getpid(), str(path))
    cache: dict[tuple[int, str], tuple[sqlite3.Connection, int]] = \
        getattr(_local, "dbs", None) or {}
    _local.dbs = cache
    hit = cache.get(key)
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        inode = -1
    if hit is not None and hit[1] == inode:
        return hit[0]
    if hit is not None:
        hit[0].close()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=isolation_level,
                         check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    for statement in setup:
        db.execute(statement)
    db.commit()
    cache[key] = (db, path.stat().st_ino)
    return db


def _db(site: Site) -> sqlite3.Connection:
    return open_index(index_path(site), "CREATE TABLE IF NOT EXISTS built (list_id INTEGER "
                      "PRIMARY KEY, changes INTEGER NOT NULL)", isolation_level=None)


def _quoted(search: str) -> str:
    """``search`` as one FTS5 string: with the trigram tokenizer, a substring match."""
    return '"' + search.replace('"', '""') + '"'


def _current(site: Site, db: sqlite3.Connection, list_id: int, changes: int,
             quick: bool = False) -> None:
    """Rebuild list ``list_id``'s index unless it was built at ``changes`` (``quick``:
    raise WouldWait instead)."""
    row = db.execute("SELECT changes FROM built WHERE list_id = ?", (list_id,)).fetchone()
    if row is not None and row[0] == changes:
        return
    if quick:
        raise WouldWait(f"the member index of list {list_id}")
    with _build_lock:
        db.execute("BEGIN IMMEDIATE")  # one builder per file, across processes
        try:
            row = db.execute("SELECT changes FROM built WHERE list_id = ?",
                             (list_id,)).fetchone()
            if row is not None and row[0] == changes:
                db.execute("ROLLBACK")
                return

            def read(conn: Connection) -> tuple[int, list[Any]]:
                with conn.begin():  # one snapshot: the counter, then the rows
                    now = member_counts(conn, list_id)[1]
                    rows = conn.execute(select(ListMember.address, ListMember.display_name)
                                        .where(ListMember.list_id == list_id)
                                        .order_by(ListMember.address)).all()
                    return now, list(rows)

            now, rows = with_connection(site, read)
            db.execute(f"DROP TABLE IF EXISTS m{list_id}")
            db.execute(f"DROP TABLE IF EXISTS a{list_id}")
            db.execute(f"CREATE VIRTUAL TABLE m{list_id} USING fts5(address, name, "
                       "tokenize='trigram')")
            db.execute(f"CREATE TABLE a{list_id} (address TEXT PRIMARY KEY, "
                       "pos INTEGER NOT NULL) WITHOUT ROWID")
            db.executemany(f"INSERT INTO m{list_id} (rowid, address, name) VALUES (?, ?, ?)",
                           ((i, r[0], r[1]) for i, r in enumerate(rows, 1)))
            db.executemany(f"INSERT INTO a{list_id} (address, pos) VALUES (?, ?)",
                           ((r[0], i) for i, r in enumerate(rows, 1)))
            db.execute("INSERT OR REPLACE INTO built (list_id, changes) VALUES (?, ?)",
                       (list_id, now))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _index_page(site: Site, name: str, domain: str, page: int, per_page: int, search: str,
                after: str, before: str, quick: bool) -> MemberPage | None:
    list_id, changes = with_connection(site, lambda c: _ids(c, name, domain))
    db = _db(site)
    _current(site, db, list_id, changes, quick)
    m, match = f"m{list_id}", _quoted(search)
    total: int | None = None
    db.execute("BEGIN")  # the pages and the count from one snapshot
    try:
        with read_budget(db, quick):
            if after or before:
                hits, has_next, has_previous = _around(db, list_id, match, after or before,
                                                       per_page, forward=bool(after))
            else:
                page = max(1, page)
                hits = db.execute(f"SELECT rowid, address FROM {m} WHERE {m} MATCH ? "
                                  "ORDER BY rowid LIMIT ? OFFSET ?",
                                  (match, per_page + 1, (page - 1) * per_page)).fetchall()
                has_next, has_previous = len(hits) > per_page, page > 1
                hits = hits[:per_page]
                if hits and not has_next and (page - 1) * per_page + len(hits) <= COUNT_MAX:
                    total = (page - 1) * per_page + len(hits)  # the last page: known
            if total is None:
                total = db.execute(f"SELECT count(*) FROM (SELECT 1 FROM {m} WHERE {m} MATCH ? "
                                   "LIMIT ?)", (match, COUNT_MAX + 1)).fetchone()[0]
    finally:
        db.execute("COMMIT")
    members = _members_by_address(site, list_id, [h[1] for h in hits])
    return MemberPage(int(total), 0 if after or before else page, per_page, members,
                      has_next, has_previous, total > COUNT_MAX)


def _around(db: sqlite3.Connection, list_id: int, match: str, mark: str, per_page: int,
            forward: bool) -> tuple[list[Any], bool, bool]:
    """(hits, has next, has previous) of the page of a search after the address ``mark``
    (``forward``), else before it: a rowid range of the index, and one look beyond."""
    m, a = f"m{list_id}", f"a{list_id}"
    if forward:
        pos = db.execute(f"SELECT coalesce(max(pos), 0) FROM {a} WHERE address <= ?",
                         (mark,)).fetchone()[0]
        ahead, order, behind = ">", "", "<="
    else:
        pos = db.execute(f"SELECT min(pos) FROM {a} WHERE address >= ?", (mark,)).fetchone()[0]
        pos = (1 << 62) if pos is None else pos
        ahead, order, behind = "<", " DESC", ">="
    hits = db.execute(f"SELECT rowid, address FROM {m} WHERE {m} MATCH ? AND rowid {ahead} ? "
                      f"ORDER BY rowid{order} LIMIT ?", (match, pos, per_page + 1)).fetchall()
    more = len(hits) > per_page
    back = db.execute(f"SELECT 1 FROM {m} WHERE {m} MATCH ? AND rowid {behind} ? LIMIT 1",
                      (match, pos)).fetchone() is not None
    if forward:
        return hits[:per_page], more, back
    return hits[:per_page][::-1], back, more


def _ids(conn: Connection, name: str, domain: str) -> tuple[int, int]:
    """(list id, member changes) in one read; UnknownList if there is no such list."""
    rows = driver_rows(conn, _LIST_AND_CHANGES, {"name": name, "domain": domain})
    if rows:
        return int(rows[0][0]), int(rows[0][1] or 0)
    list_id = list_id_of(conn, name, domain)  # the store's own UnknownList, or it is new
    return list_id, member_counts(conn, list_id)[1]


def _members_by_address(site: Site, list_id: int, addresses: Sequence[str]) -> list[Member]:
    """The members with these addresses, in address order, read fresh from the store."""
    if not addresses:
        return []
    values = {"list_id": list_id, "addresses": list(addresses)}
    rows = with_connection(site, lambda c: c.execute(_BY_ADDRESS, values).all())
    return [member_of(r) for r in rows]
