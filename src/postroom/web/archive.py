"""Archive pages of a list, for those its ``archive_policy`` lets read it.

    GET /lists/{address}/archive/                      the months, with post counts
    GET /lists/{address}/archive/{month}/              a month by date (YYYY-MM), ?after=ID
    GET /lists/{address}/archive/{month}/thread        a month by thread
    GET /lists/{address}/archive/{month}/mbox          the month's mbox file
    GET /lists/{address}/archive/msg/{id}              one post
    GET /lists/{address}/archive/msg/{id}/part/{n}     one attachment (a download)
    GET /lists/{address}/archive/search?q=             full-text search

Every file read is found through the store: the month must match ``YYYY-MM`` and a post
is found by its index id, within that list; no part of a URL becomes a path.
"""

from __future__ import annotations

import html
import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy import bindparam, or_, select
from starlette.concurrency import run_in_threadpool

from postroom import maillog
from postroom.lists import store
from postroom.lists.archive import mbox_path
from postroom.lists.listing import WouldWait
from postroom.lists.model import ListSettings
from postroom.store.models import ArchiveEntry
from postroom.store.web_models import ArchiveMonthCount
from postroom.web import reading, search
from postroom.web.context import ctx_of
from postroom.web.deps import list_of, optional_admin, page_read, reads_in_loop
from postroom.web.rights import may_read_archive

router = APIRouter(prefix="/lists/{address}/archive", dependencies=[Depends(optional_admin)])
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
PER_PAGE = 50


def marks(snippet: str, obfuscated: bool) -> str:
    """A search snippet as HTML: escaped, its matches (between \\x02 and \\x03) marked."""
    text = html.escape(reading.obfuscate(snippet, obfuscated))
    return text.replace("\x02", "<mark>").replace("\x03", "</mark>")


def month_rows(rows: list[Any], s: ListSettings) -> Markup:
    """A month page's rows (``<tr>`` each), made here and not in the template, as the
    members page's are (``admin.member_rows``): the subject and the author come from
    outside and are escaped here. Dates by ``isoformat``: ``strftime`` was the most of a
    row's cost."""
    e, o, on = html.escape, reading.obfuscate, s.obfuscate_addresses
    return Markup("".join(
        f'<tr><td>{r.date.isoformat(" ", "minutes")[:16]}</td>\n'
        f'<td><a href="../msg/{r.id}">{e(o(r.subject or "(no subject)", on))}</a></td>\n'
        f"<td>{e(o(reading.author_name(r.author), on))}</td></tr>\n"
        for r in rows))


def _readable(request: Request, address: str) -> tuple[ListSettings, int]:
    ctx = ctx_of(request)
    s, list_id = list_of(request, address)
    if not may_read_archive(ctx.site, getattr(request.state, "admin", None), s):
        raise HTTPException(403, f"the archive of {s.address} is not open to you")
    return s, list_id


def _entries(request: Request, list_id: int, *where: Any) -> list[Any]:
    query = (select(ArchiveEntry.id, ArchiveEntry.date, ArchiveEntry.author,
                    ArchiveEntry.subject, ArchiveEntry.message_id,
                    ArchiveEntry.parent_message_id)
             .where(ArchiveEntry.list_id == list_id, *where).order_by(ArchiveEntry.date,
                                                                       ArchiveEntry.id))
    return list(store.with_connection(ctx_of(request).site, lambda c: c.execute(query).all()))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def months(request: Request, address: str) -> Any:
    s, list_id = _readable(request, address)
    query = (select(ArchiveMonthCount.month, ArchiveMonthCount.posts)
             .where(ArchiveMonthCount.list_id == list_id, ArchiveMonthCount.posts > 0)
             .order_by(ArchiveMonthCount.month.desc()))
    rows = store.with_connection(ctx_of(request).site, lambda c: c.execute(query).all())
    return ctx_of(request).render(request, "archive_months.html", s=s, months=rows)


def _month(month: str) -> str:
    if not MONTH.match(month):
        raise HTTPException(404, "no such month (write YYYY-MM)")
    return month


@router.get("/{month}/", response_class=HTMLResponse, include_in_schema=False)
async def by_date(request: Request, address: str, month: str, page: int = 1, after: int = 0,
                  before: int = 0) -> Any:
    return await page_read(request, _by_date, request, address, month, page, after, before)


def _by_date(request: Request, address: str, month: str, page: int, after: int,
             before: int) -> Any:
    """A month's posts by date, PER_PAGE at a time: the page ``after`` a post (the
    "later" link) or ``before`` one ("earlier"), read as one range of the (list, month,
    date) index however deep; ``page=N`` (an OFFSET) for old links. The total is the
    month's row in ``archive_month_counts``, not a count."""
    s, list_id = _readable(request, address)
    month = _month(month)
    page = max(1, min(page, 10_000_000))
    rows, has_next, has_previous, total = store.with_connection(
        ctx_of(request).site, lambda c: _month_page(c, list_id, month, page, after, before))
    return ctx_of(request).render(request, "archive_month.html", s=s, month=month,
                                  rows=rows, rows_html=month_rows(rows, s),
                                  page=0 if after or before else page,
                                  pages=max(1, -(-total // PER_PAGE)), total=total,
                                  has_next=has_next, has_previous=has_previous)


# a month page's statements, built once (building one costs more than running it)
_MONTH_WHERE = (ArchiveEntry.list_id == bindparam("list_id"),
                ArchiveEntry.mbox_month == bindparam("month"))
_MONTH_TOTAL = select(ArchiveMonthCount.posts).where(
    ArchiveMonthCount.list_id == bindparam("list_id"),
    ArchiveMonthCount.month == bindparam("month"))
_MONTH_MARK = select(ArchiveEntry.date).where(*_MONTH_WHERE,
                                              ArchiveEntry.id == bindparam("mark"))
_MONTH_ROWS = select(ArchiveEntry.id, ArchiveEntry.date, ArchiveEntry.author,
                     ArchiveEntry.subject).where(*_MONTH_WHERE)
_MONTH_AFTER = (_MONTH_ROWS.where(ArchiveEntry.date >= bindparam("date"),
                                  or_(ArchiveEntry.date > bindparam("date"),
                                      ArchiveEntry.id > bindparam("mark")))
                .order_by(ArchiveEntry.date, ArchiveEntry.id).limit(PER_PAGE + 1))
_MONTH_BEFORE = (_MONTH_ROWS.where(ArchiveEntry.date <= bindparam("date"),
                                   or_(ArchiveEntry.date < bindparam("date"),
                                       ArchiveEntry.id < bindparam("mark")))
                 .order_by(ArchiveEntry.date.desc(), ArchiveEntry.id.desc())
                 .limit(PER_PAGE + 1))
_MONTH_OFFSET = (_MONTH_ROWS.order_by(ArchiveEntry.date, ArchiveEntry.id)
                 .limit(PER_PAGE + 1).offset(bindparam("offset")))


def _month_page(conn: Any, list_id: int, month: str, page: int, after: int,
                before: int) -> tuple[list[Any], bool, bool, int]:
    values: dict[str, Any] = {"list_id": list_id, "month": month}
    total = int(conn.scalar(_MONTH_TOTAL, values) or 0)
    mark_id = after or before
    mark = conn.execute(_MONTH_MARK, {**values, "mark": mark_id}).first() if mark_id else None
    if mark is not None:
        values.update(date=mark[0], mark=mark_id)
        if after:
            rows = list(conn.execute(_MONTH_AFTER, values).all())
            return rows[:PER_PAGE], len(rows) > PER_PAGE, True, total
        rows = list(conn.execute(_MONTH_BEFORE, values).all())
        return rows[:PER_PAGE][::-1], True, len(rows) > PER_PAGE, total
    # page N (also an after/before post that is not there any more: the first page)
    page = page if not mark_id else 1
    rows = list(conn.execute(_MONTH_OFFSET, {**values, "offset": (page - 1) * PER_PAGE}).all())
    return rows[:PER_PAGE], len(rows) > PER_PAGE, page > 1, total


def threads(entries: list[Any]) -> list[tuple[int, Any]]:
    """(depth, entry) in thread order: each post under the one it replies to (when that
    one is in the same list), roots and replies by date."""
    by_id = {e.message_id: e for e in entries if e.message_id}
    children: dict[str, list[Any]] = {}
    roots = []
    for e in entries:
        parent = e.parent_message_id
        if parent and parent in by_id and parent != e.message_id:
            children.setdefault(parent, []).append(e)
        else:
            roots.append(e)
    out: list[tuple[int, Any]] = []
    seen: set[int] = set()

    def walk(e: Any, depth: int) -> None:
        if e.id in seen:
            return
        seen.add(e.id)
        out.append((min(depth, 10), e))
        for child in children.get(e.message_id, []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return out


@router.get("/{month}/thread", response_class=HTMLResponse, include_in_schema=False)
def by_thread(request: Request, address: str, month: str) -> Any:
    s, list_id = _readable(request, address)
    month = _month(month)
    entries = _entries(request, list_id, ArchiveEntry.mbox_month == month)
    return ctx_of(request).render(request, "archive_thread.html", s=s, month=month,
                                  items=threads(entries), author_name=reading.author_name)


@router.get("/{month}/mbox", include_in_schema=False)
def mbox(request: Request, address: str, month: str) -> Response:
    s, _ = _readable(request, address)
    month = _month(month)
    path = mbox_path(ctx_of(request).site, s, month)
    if not path.is_file():
        raise HTTPException(404, "no archive for that month")
    return FileResponse(path, media_type="application/mbox",
                        headers={"Content-Disposition": reading.disposition(
                            f"{s.name}-{month}.mbox")})


def _raw(request: Request, s: ListSettings, list_id: int, msg_id: int) -> tuple[Any, bytes]:
    query = (select(ArchiveEntry).where(ArchiveEntry.id == msg_id,
                                        ArchiveEntry.list_id == list_id))
    row = store.with_connection(ctx_of(request).site, lambda c: c.execute(query).first())
    if row is None:
        raise HTTPException(404, "no such post in this archive")
    entry = row  # a Core row: the columns by name
    path = mbox_path(ctx_of(request).site, s, entry.mbox_month)
    try:
        return entry, reading.from_mbox(path, entry.offset, entry.length)
    except OSError:
        raise HTTPException(404, "the archive file of this post is missing") from None


def _neighbours(request: Request, list_id: int, entry: Any) -> tuple[Any, Any]:
    site = ctx_of(request).site
    base = select(ArchiveEntry.id, ArchiveEntry.subject).where(ArchiveEntry.list_id == list_id)
    before = base.where(ArchiveEntry.id < entry.id).order_by(ArchiveEntry.id.desc()).limit(1)
    after = base.where(ArchiveEntry.id > entry.id).order_by(ArchiveEntry.id).limit(1)
    return (store.with_connection(site, lambda c: c.execute(before).first()),
            store.with_connection(site, lambda c: c.execute(after).first()))


@router.get("/msg/{msg_id}", response_class=HTMLResponse, include_in_schema=False)
def message(request: Request, address: str, msg_id: int) -> Any:
    s, list_id = _readable(request, address)
    entry, raw = _raw(request, s, list_id, msg_id)
    shown = reading.show(raw, s.obfuscate_addresses)
    prev, nxt = _neighbours(request, list_id, entry)
    return ctx_of(request).render(request, "message.html", s=s, m=shown, entry=entry,
                                  html=[Markup(h) for h in shown.html], prev=prev, next=nxt)


@router.get("/msg/{msg_id}/part/{index}", include_in_schema=False)
def part(request: Request, address: str, msg_id: int, index: int) -> Response:
    s, list_id = _readable(request, address)
    _, raw = _raw(request, s, list_id, msg_id)
    found = reading.attachment(raw, index)
    if found is None:
        raise HTTPException(404, "no such attachment")
    name, data = found
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": reading.disposition(name),
                             "Content-Security-Policy": "default-src 'none'; sandbox"})


def hit_items(hits: list[search.Hit], s: ListSettings) -> Markup:
    """The search page's hits (``<li>`` each), made here as ``month_rows`` are."""
    e, o, on = html.escape, reading.obfuscate, s.obfuscate_addresses
    return Markup("".join(
        f'<li><a href="msg/{h.id}">{e(o(h.subject or "(no subject)", on))}</a>\n'
        f'<span class="who">{e(o(reading.author_name(h.author), on))}, '
        f'{h.date.date().isoformat()}</span>\n'
        f'<p class="snippet">{marks(h.snippet, on)}</p></li>\n'
        for h in hits))


@router.get("/search", response_class=HTMLResponse, include_in_schema=False)
async def find(request: Request, address: str, q: str = "", page: int = 1) -> Any:
    """On SQLite the search runs in the loop (as ``page_read``), after a catch-up of
    the index in a thread when one is due (``search.claim_catch_up``), and goes to a
    thread when it reads for longer than a quick search may (``WouldWait``)."""
    if not reads_in_loop(request):
        return await run_in_threadpool(_find, request, address, q, page)
    s, list_id = _readable(request, address)
    site = ctx_of(request).site
    if q.strip() and search.claim_catch_up(site):
        try:
            await run_in_threadpool(search.catch_up, site)
        except Exception as e:  # the index as it is still answers; the next claim retries
            maillog.line(f"warning: archive search: catching the index up failed: {e}")
    try:
        return _results(request, s, list_id, q, page, fresh=False, quick=True)
    except WouldWait:
        return await run_in_threadpool(_results, request, s, list_id, q, page, fresh=False)


def _find(request: Request, address: str, q: str, page: int) -> Any:
    s, list_id = _readable(request, address)
    return _results(request, s, list_id, q, page)


def _results(request: Request, s: ListSettings, list_id: int, q: str, page: int,
             fresh: bool = True, quick: bool = False) -> Any:
    page = max(1, min(page, 100))
    hits, total = search.search(ctx_of(request).site, list_id, q[:200], PER_PAGE,
                                (page - 1) * PER_PAGE, fresh=fresh,
                                quick=quick) if q.strip() else ([], 0)
    return ctx_of(request).render(request, "archive_search.html", s=s, q=q, total=total,
                                  page=page, hits_html=hit_items(hits, s))

