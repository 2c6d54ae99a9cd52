"""The public pages: the index of lists, a list's page with its sign-up and leave forms,
the confirmation page a mail links to, and the RFC 8058 one-click unsubscribe.

    GET  /lists/                              index (name, description, member count)
    GET  /lists/{address}/                    a list: about, subscribe, unsubscribe
    POST /lists/{address}/join                starts the mail confirmation
    POST /lists/{address}/leave               starts it for leaving (only mails members)
    GET  /lists/{address}/confirm/{token}     the page a confirmation mail links to
    POST /lists/{address}/confirm/{token}     carries it out
    GET  /lists/{list_id}/unsubscribe?member=&token=   a page with one button
    POST /lists/{list_id}/unsubscribe?member=&token=   one-click: List-Unsubscribe=One-Click

The one-click POST takes no cookie and no CSRF token: the token in the URL (an HMAC of
the list's secret for that member, ``postroom.lists.tokens``) is the authority. A GET
never changes anything, so a link scanner that follows the URL unsubscribes nobody.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from postroom import maillog
from postroom.errors import PostroomError
from postroom.lists import store, subscribe, tokens
from postroom.lists.model import ArchivePolicy
from postroom.store.lists import check_address
from postroom.store.models import ListMember, MailingList
from postroom.web import signup
from postroom.web.context import ctx_of
from postroom.web.deps import list_settings, optional_admin
from postroom.web.rights import may_read_archive
from postroom.web.security import client_ip, csrf_protect

router = APIRouter(dependencies=[Depends(csrf_protect)])
oneclick = APIRouter()  # no CSRF: the URL's token is the authority (RFC 8058)


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/lists/", status_code=303)


INDEX_SECONDS = 2.0  # the index is read again at most this often (counts of big lists)
_index_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}


def _index(site: Any) -> list[dict[str, Any]]:
    key = str(site.home)
    hit = _index_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < INDEX_SECONDS:
        return hit[1]
    counts = (select(ListMember.list_id, func.count().label("n"))
              .group_by(ListMember.list_id).subquery())
    query = (select(MailingList.name, MailingList.domain, MailingList.description,
                    MailingList.archive_policy, counts.c.n)
             .outerjoin(counts, counts.c.list_id == MailingList.id)
             .order_by(MailingList.domain, MailingList.name))
    rows = store.with_connection(site, lambda c: c.execute(query).all())
    out = [{"address": f"{n}@{d}", "description": desc,
            "members": (count or 0) if policy == ArchivePolicy.PUBLIC.value else None}
           for n, d, desc, policy, count in rows]
    _index_cache[key] = (time.monotonic(), out)
    return out


@router.get("/lists/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request) -> Any:
    ctx = ctx_of(request)
    key = str(ctx.site.home)
    hit = _index_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < INDEX_SECONDS:
        lists = hit[1]  # no thread needed: the cache is in memory
    else:
        lists = await run_in_threadpool(_index, ctx.site)
    return ctx.render(request, "index.html", lists=lists)


def _list_page(request: Request, address: str, *, message: str = "", error: str = "",
               status: int = 200) -> Any:
    ctx = ctx_of(request)
    s = list_settings(request, address)
    admin = getattr(request.state, "admin", None)
    return ctx.render(request, "list.html", status_code=status, s=s, message=message,
                      error=error, archive=may_read_archive(ctx.site, admin, s),
                      form_token=signup.form_token(ctx.key, s.address))


@router.get("/lists/{address}/", response_class=HTMLResponse, include_in_schema=False)
async def list_page(request: Request, address: str) -> Any:
    await optional_admin(request)
    return await run_in_threadpool(_list_page, request, address)


def _start(request: Request, address: str, kind: str, email: str, token: str) -> Any:
    ctx = ctx_of(request)
    rt = ctx.runtime()
    s = list_settings(request, address)
    if kind == subscribe.SUBSCRIBE and not s.web_signup:
        raise HTTPException(403, f"{s.address} takes no sign-ups on the web; send any "
                                 f"message to {s.service('join')}")
    try:
        who = check_address(email, "address")
        signup.check_form_token(ctx.key, s.address, token, ctx.web.signup_min_seconds)
        target = store.target_for(rt.site, s.address)
        assert target is not None
        is_member = store.member(rt.site, s.address, who) is not None
        sent = kind == subscribe.SUBSCRIBE or is_member
        if sent:
            signup.within_limits(rt, who, client_ip(request))
            signup.request(rt, target, kind, who)
    except (PostroomError, signup.SignupRefused) as e:
        return _list_page(request, address, error=str(e), status=400)
    if kind == subscribe.SUBSCRIBE:
        text = (f"A confirmation has been sent to {who}. Follow the instructions in it to "
                f"join {s.address}.")
    else:
        text = (f"If {who} is subscribed to {s.address}, a confirmation has been sent to "
                "it. Follow the instructions in it to leave.")
    return _list_page(request, address, message=text)


@router.post("/lists/{address}/join", response_class=HTMLResponse,
             include_in_schema=False)
def subscribe_form(request: Request, address: str, email: str = Form(""),
                   form_token: str = Form("")) -> Any:
    return _start(request, address, subscribe.SUBSCRIBE, email, form_token)


@router.post("/lists/{address}/leave", response_class=HTMLResponse,
             include_in_schema=False)
def unsubscribe_form(request: Request, address: str, email: str = Form(""),
                     form_token: str = Form("")) -> Any:
    return _start(request, address, subscribe.UNSUBSCRIBE, email, form_token)


@router.get("/lists/{address}/confirm/{token}", response_class=HTMLResponse,
            include_in_schema=False)
def confirm_page(request: Request, address: str, token: str) -> Any:
    ctx = ctx_of(request)
    s = list_settings(request, address)
    found = signup.pending(ctx.runtime(), token)
    return ctx.render(request, "confirm.html", s=s, token=token, pending=found,
                      status_code=200 if found else 404)


@router.post("/lists/{address}/confirm/{token}", response_class=HTMLResponse,
             include_in_schema=False)
def confirm_done(request: Request, address: str, token: str) -> Any:
    ctx = ctx_of(request)
    s = list_settings(request, address)
    rt = ctx.runtime()
    target = store.target_for(rt.site, s.address)
    done = signup.confirm(rt, target, token) if target is not None else None
    return ctx.render(request, "confirmed.html", s=s, done=done,
                      status_code=200 if done else 404)


# -- one-click unsubscribe (RFC 8058) ---------------------------------------------------------

def _by_list_id(request: Request, list_id: str) -> store.ListTarget:
    """The list whose RFC 2919 id (``name.domain``) this is."""
    site = ctx_of(request).site
    name, _, domain = list_id.lower().partition(".")
    while domain:
        target = store.target_for(site, f"{name}@{domain}")
        if target is not None and target.service == "" and \
                target.settings.list_id == list_id.lower():
            return target
        more, _, domain = domain.partition(".")
        name = f"{name}.{more}"
    raise HTTPException(404, "no such list")


def _checked(request: Request, list_id: str, member: str, token: str) -> store.ListTarget:
    target = _by_list_id(request, list_id)
    if not tokens.check_unsubscribe_token(target.secret.encode(), target.settings.list_id,
                                          member.lower(), token):
        raise HTTPException(403, "this unsubscribe link is not valid (the list may have "
                                 "had its secret changed): unsubscribe on the list's page")
    return target


@oneclick.get("/lists/{list_id}/unsubscribe", response_class=HTMLResponse,
              include_in_schema=False)
def oneclick_page(request: Request, list_id: str, member: str = "", token: str = "") -> Any:
    ctx = ctx_of(request)
    target = _checked(request, list_id, member, token)
    is_member = store.member(ctx.site, target.settings.address, member) is not None
    return ctx.render(request, "oneclick.html", s=target.settings, member=member.lower(),
                      token=token, list_id=list_id, is_member=is_member, done=False)


@oneclick.post("/lists/{list_id}/unsubscribe", response_class=HTMLResponse,
               include_in_schema=False)
def oneclick_post(request: Request, list_id: str, member: str = "", token: str = "",
                  list_unsubscribe: str = Form("", alias="List-Unsubscribe")) -> Any:
    ctx = ctx_of(request)
    if list_unsubscribe != "One-Click":
        raise HTTPException(400, "expected List-Unsubscribe=One-Click (RFC 8058)")
    target = _checked(request, list_id, member, token)
    s = target.settings
    removed, _ = store.remove_members(ctx.site, s.name, s.domain, [member])
    if removed:
        maillog.line(f"list {s.address}: <{member.lower()}> unsubscribed (one-click)")
    return ctx.render(request, "oneclick.html", s=s, member=member.lower(), token=token,
                      list_id=list_id, is_member=False, done=True)
