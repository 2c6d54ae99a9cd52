"""The admin pages of lists: login and logout, password reset by mail, the lists an
account looks after, held posts (approve, reject, discard), members (paginated,
searchable, add in bulk with a report per line, remove) and the settings form.

    GET/POST /admin/login              POST rotates the session: a new id at every login
    POST     /admin/logout
    GET/POST /admin/reset              mail a reset link to the account's address
    GET/POST /admin/reset/{token}
    GET      /admin/                   the lists this account looks after
    GET      /admin/lists/{address}/held            and /held/{id}, POST /held/{id}/{action}
    GET      /admin/lists/{address}/members         ?after=|before=|page=, &q=;
                                                    POST members/add, members/remove
    GET/POST /admin/lists/{address}/settings

Every POST is checked for its CSRF token (``security.csrf_protect``); every page but
login and reset needs a session (``deps.page_admin``) and the right role on the list.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from postroom import maillog
from postroom.errors import PostroomError
from postroom.lists import held as held_posts
from postroom.lists import store
from postroom.lists.listing import WouldWait, page_members
from postroom.lists.model import Member
from postroom.lists.settings_text import SETTING_NAMES, parse_settings, show_value
from postroom.lists.sync import parse_members
from postroom.store.passwords import check_strength
from postroom.web import accounts, moderation, reading
from postroom.web.accounts import Admin
from postroom.web.context import ctx_of
from postroom.web.deps import (
    list_settings,
    need_role,
    optional_admin,
    page_admin,
    page_read,
    reads_in_loop,
)
from postroom.web.mailing import send_reset
from postroom.web.rights import Role, lists_of
from postroom.web.security import (
    SESSION_COOKIE,
    client_ip,
    csrf_protect,
    safe_next,
    set_cookie,
)

INLINE_PAGES = 10  # ?page=N up to this reads in the loop on SQLite (OFFSET of 900 rows)

router = APIRouter(prefix="/admin", dependencies=[Depends(csrf_protect)])
PER_PAGE = 100
# the settings form shows these, in this order (owners and rules as text, like lists set)
FORM_FIELDS = tuple(SETTING_NAMES)


# -- login ------------------------------------------------------------------------------------

@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request, next: str = "/admin/") -> Any:
    return ctx_of(request).render(request, "login.html", next=safe_next(next), error="")


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login(request: Request, login: str = Form(""), password: str = Form(""),
                next: str = Form("/admin/")) -> Any:
    ctx = ctx_of(request)
    try:
        admin = await run_in_threadpool(accounts.login, ctx.site, login[:64], password[:1024])
    except accounts.LoginRefused as e:
        maillog.line(f"web: login for {login[:64]!r} from [{client_ip(request)}] refused: {e}")
        return ctx.render(request, "login.html", status_code=401, next=safe_next(next),
                          error="Login failed: wrong name or password, or the account is "
                                "locked for a while after too many failures.")
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await run_in_threadpool(accounts.end_session, ctx.site, old)
    token = await run_in_threadpool(accounts.new_session, ctx.site, admin)
    maillog.line(f"web: {admin.login} logged in from [{client_ip(request)}]")
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token,
               max_age=ctx.web.session_hours * 3600)
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Any:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await run_in_threadpool(accounts.end_session, ctx_of(request).site, token)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/reset", response_class=HTMLResponse, include_in_schema=False)
def reset_page(request: Request) -> Any:
    return ctx_of(request).render(request, "reset.html", sent=False, error="")


@router.post("/reset", response_class=HTMLResponse, include_in_schema=False)
def reset_ask(request: Request, who: str = Form("")) -> Any:
    ctx = ctx_of(request)
    if accounts.bump(ctx.site, f"reset-from:{client_ip(request)}", 10):
        found = accounts.new_reset(ctx.site, who.strip()[:320])
        if found is not None:
            send_reset(ctx.runtime(), found[0], found[1])
    return ctx.render(request, "reset.html", sent=True, error="")


@router.get("/reset/{token}", response_class=HTMLResponse, include_in_schema=False)
def reset_form(request: Request, token: str) -> Any:
    return ctx_of(request).render(request, "reset_set.html", token=token, error="")


@router.post("/reset/{token}", response_class=HTMLResponse, include_in_schema=False)
def reset_set(request: Request, token: str, password: str = Form("")) -> Any:
    ctx = ctx_of(request)
    try:
        check_strength(password, login="")
    except PostroomError as e:
        return ctx.render(request, "reset_set.html", status_code=400, token=token,
                          error=str(e))
    admin = accounts.use_reset(ctx.site, token, password)
    if admin is None:
        return ctx.render(request, "reset_set.html", status_code=404, token=token,
                          error="This reset link is not valid any more: ask for another.")
    return RedirectResponse("/admin/login", status_code=303)


# -- the lists of this account ----------------------------------------------------------------

@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request, admin: Admin = Depends(page_admin)) -> Any:
    ctx = ctx_of(request)
    mine = lists_of(ctx.site, admin)
    held = held_posts.held_posts(ctx.site)
    counts = {a: sum(1 for h in held if h.list_address == a) for a in mine}
    return ctx.render(request, "admin_home.html", lists=mine, counts=counts, Role=Role)


# -- held posts -------------------------------------------------------------------------------

@router.get("/lists/{address}/held", response_class=HTMLResponse, include_in_schema=False)
def held_page(request: Request, address: str, admin: Admin = Depends(page_admin),
              done: str = "") -> Any:
    s = list_settings(request, address)
    need_role(request, admin, s, Role.MODERATOR)
    posts = held_posts.held_posts(ctx_of(request).site, s.address)
    return ctx_of(request).render(request, "held.html", s=s, posts=posts, done=done[:200])


@router.get("/lists/{address}/held/{held_id}", response_class=HTMLResponse,
            include_in_schema=False)
def held_one(request: Request, address: str, held_id: int,
             admin: Admin = Depends(page_admin)) -> Any:
    s = list_settings(request, address)
    need_role(request, admin, s, Role.MODERATOR)
    try:
        h, raw = moderation.held_of(ctx_of(request).runtime(), s.address, held_id)
    except moderation.NotHere as e:
        raise HTTPException(404, str(e)) from None
    shown = reading.show(raw, False)
    from markupsafe import Markup

    return ctx_of(request).render(request, "held_one.html", s=s, h=h, m=shown,
                                  html=[Markup(x) for x in shown.html])


@router.post("/lists/{address}/held/{held_id}/{action}", include_in_schema=False)
def held_decide(request: Request, address: str, held_id: int, action: str,
                reason: str = Form(""), admin: Admin = Depends(page_admin)) -> Any:
    s = list_settings(request, address)
    need_role(request, admin, s, Role.MODERATOR)
    if action not in moderation.ACTIONS:
        raise HTTPException(404, "no such action")
    try:
        said = moderation.decide(ctx_of(request).runtime(), s.address, held_id, action,
                                 reason[:500])
    except moderation.NotHere as e:
        raise HTTPException(404, str(e)) from None
    maillog.line(f"web: {admin.login}: held post {held_id} of {s.address}: {said}")
    from urllib.parse import quote

    return RedirectResponse(f"/admin/lists/{s.address}/held?done="
                            f"{quote(f'{held_id}: {said}')}", status_code=303)


# -- members ----------------------------------------------------------------------------------

def _members(request: Request, address: str, admin: Admin, page: int, q: str,
             report: list[str] | None = None, status: int = 200, after: str = "",
             before: str = "", quick: bool = False) -> Any:
    s = list_settings(request, address)
    need_role(request, admin, s, Role.OWNER)
    page = max(1, min(page, 10_000_000))
    listing = page_members(ctx_of(request).site, s.name, s.domain, page, PER_PAGE, q[:200],
                           after=after[:320], before=before[:320], indexed=True,
                           quick=quick)
    return ctx_of(request).render(request, "members.html", status_code=status, s=s,
                                  listing=listing, rows=member_rows(listing.members), q=q,
                                  report=report or [])


def member_rows(members: list[Member]) -> Markup:
    """The members table's rows (``<tr>`` each), made here and not in the template: a
    page of 100 members is 600 cells, and Jinja2's autoescape of each (a Markup object a
    cell) was a fifth of the page's CPU. Only the address and the name come from outside;
    each is escaped here."""
    e = html.escape
    return Markup("".join(
        f"<tr><td>{e(m.address)}</td><td>{e(m.display_name)}</td>"
        f"<td>{'on' if m.delivery_enabled else 'off'}</td>\n<td>{e(m.mode.value)}</td>"
        f"<td>{'yes' if m.moderated else ''}</td><td class=\"num\">{m.bounce_score}</td></tr>\n"
        for m in members))


@router.get("/lists/{address}/members", response_class=HTMLResponse, include_in_schema=False)
async def members(request: Request, address: str, page: int = 1, q: str = "", after: str = "",
                  before: str = "", admin: Admin = Depends(page_admin)) -> Any:
    """A page of members: ``after``/``before`` an address (the next and previous links,
    one index range however deep), or ``page=N`` (old links). A deep ``page=N`` (an
    OFFSET walks the rows before it) runs in a thread whatever the store, and so does a
    search that would first rebuild the search index, scan, or read for longer than a
    quick search may (``WouldWait``)."""
    if q.strip() and reads_in_loop(request) and (page <= INLINE_PAGES or after or before):
        try:
            return _members(request, address, admin, page, q, after=after, before=before,
                            quick=True)
        except WouldWait:
            pass
    if q.strip() or (page > INLINE_PAGES and not (after or before)):
        return await run_in_threadpool(_members, request, address, admin, page, q,
                                       after=after, before=before)
    return await page_read(request, _members, request, address, admin, page, q,
                           after=after, before=before)


@router.post("/lists/{address}/members/add", response_class=HTMLResponse,
             include_in_schema=False)
def members_add(request: Request, address: str, text: str = Form(""),
                admin: Admin = Depends(page_admin)) -> Any:
    s = list_settings(request, address)
    need_role(request, admin, s, Role.OWNER)
    found, errors = parse_members(text.splitlines()[:100_000], "line")
    if errors:
        return _members(request, address, admin, 1, "", [*errors, "nobody was added: "
                        "correct the lines above and send the list again"], status=400)
    result = store.add_members(ctx_of(request).site, s.name, s.domain, found)
    report = [f"+ {a}: added" for a in result.added] + \
        [f"= {a}: already a member" for a in result.existing]
    maillog.line(f"web: {admin.login}: {len(result.added)} members added to {s.address}")
    return _members(request, address, admin, 1, "", report or ["no addresses given"])


@router.post("/lists/{address}/members/remove", response_class=HTMLResponse,
             include_in_schema=False)
def members_remove(request: Request, address: str, text: str = Form(""),
                   admin: Admin = Depends(page_admin)) -> Any:
    s = list_settings(request, address)
    need_role(request, admin, s, Role.OWNER)
    wanted = [w for w in text.replace(",", "\n").split() if w][:100_000]
    removed, absent = store.remove_members(ctx_of(request).site, s.name, s.domain, wanted)
    report = [f"- {a}: removed" for a in removed] + [f"? {a}: not a member" for a in absent]
    maillog.line(f"web: {admin.login}: {len(removed)} members removed from {s.address}")
    return _members(request, address, admin, 1, "", report or ["no addresses given"])


# -- settings ---------------------------------------------------------------------------------

def _settings_page(request: Request, s: Any, values: dict[str, str], errors: dict[str, str],
                   saved: bool = False, status: int = 200) -> Any:
    return ctx_of(request).render(request, "settings.html", status_code=status, s=s,
                                  fields=FORM_FIELDS, values=values, errors=errors,
                                  saved=saved)


@router.get("/lists/{address}/settings", response_class=HTMLResponse, include_in_schema=False)
def settings_page(request: Request, address: str, admin: Admin = Depends(page_admin)) -> Any:
    s = list_settings(request, address)
    need_role(request, admin, s, Role.OWNER)
    return _settings_page(request, s, {k: show_value(s, k) for k in FORM_FIELDS}, {})


@router.post("/lists/{address}/settings", response_class=HTMLResponse,
             include_in_schema=False)
async def settings_save(request: Request, address: str,
                        admin: Admin = Depends(page_admin)) -> Any:
    form = await request.form()
    s = await run_in_threadpool(list_settings, request, address)
    await run_in_threadpool(need_role, request, admin, s, Role.OWNER)
    values = {k: str(form.get(k, "")) for k in FORM_FIELDS}
    current = {k: show_value(s, k) for k in FORM_FIELDS}
    changed = [f"{k}={v}" for k, v in values.items() if v != current[k]]
    errors: dict[str, str] = {}
    for pair in changed:  # each alone, so every bad field gets its own message
        try:
            parse_settings([pair])
        except PostroomError as e:
            errors[pair.partition("=")[0]] = str(e)
    if errors:
        return _settings_page(request, s, values, errors, status=400)
    if changed:
        typed = parse_settings(changed)
        s = await run_in_threadpool(store.update_settings, ctx_of(request).site, s.name,
                                    s.domain, typed)
        maillog.line(f"web: {admin.login}: {s.address} settings changed: "
                     f"{', '.join(p.partition('=')[0] for p in changed)}")
    return _settings_page(request, s, {k: show_value(s, k) for k in FORM_FIELDS}, {},
                          saved=True)


__all__ = ["optional_admin", "router"]
