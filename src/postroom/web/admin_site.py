"""Site admin pages: the site's status (and quiescent mode, changed only with a
confirmation box ticked), creating and deleting lists, admin accounts, and API tokens
(every account manages its own; a site admin sees all).

    GET  /admin/site                 status
    POST /admin/site/quiescent       on=1|0, confirm=yes
    GET  /admin/site/lists           POST /admin/site/lists (create), /lists/delete
    GET  /admin/site/accounts        POST /admin/site/accounts (create), /accounts/delete
    GET  /admin/tokens               POST /admin/tokens (new), /admin/tokens/revoke
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from postroom import maillog
from postroom.errors import PostroomError
from postroom.store.lists import all_lists, create_list, delete_list, split_list_address
from postroom.store.passwords import check_strength
from postroom.web import accounts
from postroom.web.accounts import SCOPES, Admin
from postroom.web.context import ctx_of
from postroom.web.deps import page_admin, site_admin
from postroom.web.security import csrf_protect
from postroom.web.status import status_of

router = APIRouter(prefix="/admin", dependencies=[Depends(csrf_protect)])


@router.get("/site", response_class=HTMLResponse, include_in_schema=False)
def site_page(request: Request, admin: Admin = Depends(site_admin), said: str = "") -> Any:
    ctx = ctx_of(request)
    return ctx.render(request, "site.html", st=status_of(ctx.site), said=said[:200])


@router.post("/site/quiescent", include_in_schema=False)
def quiescent(request: Request, on: str = Form(""), confirm: str = Form(""),
              reason: str = Form(""), admin: Admin = Depends(site_admin)) -> Any:
    site = ctx_of(request).site
    if confirm != "yes":
        return RedirectResponse("/admin/site?said=tick+the+box+to+confirm", status_code=303)
    if on == "1":
        site.quiesce(reason[:200] or f"by {admin.login} on the web")
        maillog.event(f"quiescent: by {admin.login} on the web")
        said = "quiescent: no mail is taken or delivered"
    else:
        site.resume()
        maillog.event(f"resumed: by {admin.login} on the web")
        said = "resumed" + (" (but the profile still says quiescent = true)"
                            if site.profile_quiescent else "")
    from urllib.parse import quote

    return RedirectResponse(f"/admin/site?said={quote(said)}", status_code=303)


def _lists_page(request: Request, said: str = "", error: str = "", status: int = 200) -> Any:
    ctx = ctx_of(request)
    return ctx.render(request, "site_lists.html", status_code=status,
                      lists=all_lists(ctx.site), said=said, error=error)


@router.get("/site/lists", response_class=HTMLResponse, include_in_schema=False)
def lists_page(request: Request, admin: Admin = Depends(site_admin)) -> Any:
    return _lists_page(request)


@router.post("/site/lists", response_class=HTMLResponse, include_in_schema=False)
def lists_create(request: Request, address: str = Form(""), owner: str = Form(""),
                 description: str = Form(""), admin: Admin = Depends(site_admin)) -> Any:
    site = ctx_of(request).site
    try:
        name, domain = split_list_address(address, site.profile.site.domains[0])
        owners = [o for o in owner.replace(",", " ").split() if o]
        info = create_list(site, name, domain, owners=owners, description=description[:1000])
    except PostroomError as e:
        return _lists_page(request, error=str(e), status=400)
    maillog.line(f"web: {admin.login}: list {info.address} created")
    return _lists_page(request, said=f"{info.address} created")


@router.post("/site/lists/delete", response_class=HTMLResponse, include_in_schema=False)
def lists_delete(request: Request, address: str = Form(""), confirm: str = Form(""),
                 admin: Admin = Depends(site_admin)) -> Any:
    site = ctx_of(request).site
    if confirm.strip().lower() != address.strip().lower():
        return _lists_page(request, error="type the list's address again to delete it",
                           status=400)
    try:
        name, domain = split_list_address(address)
        delete_list(site, name, domain)
    except PostroomError as e:
        return _lists_page(request, error=str(e), status=400)
    maillog.line(f"web: {admin.login}: list {name}@{domain} deleted")
    return _lists_page(request, said=f"{name}@{domain} deleted")


def _accounts_page(request: Request, said: str = "", error: str = "",
                   status: int = 200) -> Any:
    ctx = ctx_of(request)
    return ctx.render(request, "site_accounts.html", status_code=status,
                      admins=accounts.all_admins(ctx.site), said=said, error=error)


@router.get("/site/accounts", response_class=HTMLResponse, include_in_schema=False)
def accounts_page(request: Request, admin: Admin = Depends(site_admin)) -> Any:
    return _accounts_page(request)


@router.post("/site/accounts", response_class=HTMLResponse, include_in_schema=False)
def accounts_create(request: Request, login: str = Form(""), email: str = Form(""),
                    password: str = Form(""), is_site_admin: str = Form(""),
                    admin: Admin = Depends(site_admin)) -> Any:
    site = ctx_of(request).site
    try:
        check_strength(password, login=login, addresses=[email] if email else [])
        made = accounts.create_admin(site, login.strip(), password, email=email.strip(),
                                     site_admin=is_site_admin == "yes")
    except PostroomError as e:
        return _accounts_page(request, error=str(e), status=400)
    maillog.line(f"web: {admin.login}: account {made.login} created")
    return _accounts_page(request, said=f"account {made.login} created")


@router.post("/site/accounts/delete", response_class=HTMLResponse, include_in_schema=False)
def accounts_delete(request: Request, login: str = Form(""),
                    admin: Admin = Depends(site_admin)) -> Any:
    if login == admin.login:
        return _accounts_page(request, error="you cannot delete your own account",
                              status=400)
    try:
        accounts.delete_admin(ctx_of(request).site, login)
    except PostroomError as e:
        return _accounts_page(request, error=str(e), status=400)
    maillog.line(f"web: {admin.login}: account {login} deleted")
    return _accounts_page(request, said=f"account {login} deleted")


# -- API tokens of the logged-in account -----------------------------------------------------

def _tokens_page(request: Request, admin: Admin, new: str = "", error: str = "",
                 status: int = 200) -> Any:
    ctx = ctx_of(request)
    mine = accounts.tokens_of(ctx.site, None if admin.site_admin else admin.login)
    return ctx.render(request, "tokens.html", status_code=status, tokens=mine, new=new,
                      error=error, scopes=SCOPES)


@router.get("/tokens", response_class=HTMLResponse, include_in_schema=False)
def tokens_page(request: Request, admin: Admin = Depends(page_admin)) -> Any:
    return _tokens_page(request, admin)


@router.post("/tokens", response_class=HTMLResponse, include_in_schema=False)
async def tokens_new(request: Request, admin: Admin = Depends(page_admin)) -> Any:
    form = await request.form()
    scopes = [str(s) for s in form.getlist("scope")]
    name = str(form.get("name", ""))[:64]
    from starlette.concurrency import run_in_threadpool

    try:
        token = await run_in_threadpool(accounts.new_api_token, ctx_of(request).site,
                                        admin.login, scopes, name)
    except PostroomError as e:
        return await run_in_threadpool(_tokens_page, request, admin, "", str(e), 400)
    maillog.line(f"web: {admin.login}: API token {name!r} made ({' '.join(scopes)})")
    return await run_in_threadpool(_tokens_page, request, admin, token)


@router.post("/tokens/revoke", response_class=HTMLResponse, include_in_schema=False)
def tokens_revoke(request: Request, token_id: int = Form(0),
                  admin: Admin = Depends(page_admin)) -> Any:
    ok = accounts.revoke_token(ctx_of(request).site, token_id,
                               None if admin.site_admin else admin.login)
    if not ok:
        raise HTTPException(404, "no such token")
    maillog.line(f"web: {admin.login}: API token {token_id} revoked")
    return _tokens_page(request, admin)
