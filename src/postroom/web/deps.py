"""Request dependencies: the logged-in account of a page, the account and scopes of an
API token, the list a URL names. A page without a login answers 303 to the login page
(with ``next``); the API answers 401 (no or bad token) or 403 (scope or rights)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from sqlalchemy import bindparam, select
from starlette.concurrency import run_in_threadpool

from postroom.errors import PostroomError
from postroom.lists import store
from postroom.lists.model import ListSettings
from postroom.store.db import driver_rows, store_url
from postroom.store.models import MailingList
from postroom.store.web_models import ListCounter
from postroom.web import accounts
from postroom.web.accounts import Admin
from postroom.web.context import ctx_of
from postroom.web.rights import Role, role_on
from postroom.web.security import SESSION_COOKIE

T = TypeVar("T")


class LoginNeeded(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def login_url(next_path: str) -> str:
    return f"/admin/login?next={quote(next_path, safe='/@')}"


def reads_in_loop(request: Request) -> bool:
    """Whether a page's store reads run in the event loop rather than in a thread: on
    SQLite, where a read is of a local file and, in WAL mode, never waits for a writer.
    The hand-off to a thread and back cost a third of a page's CPU (the thread runs on
    the other core, with cold caches: docs/performance.md, web). PostgreSQL reads wait
    on the network, and a thread lets the loop go on meanwhile."""
    return store_url(ctx_of(request).site).get_backend_name() == "sqlite"


async def page_read(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, a page's work that only reads the store (no index to
    rebuild, no write): in the loop on SQLite (``reads_in_loop``), else in a thread."""
    if reads_in_loop(request):
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


async def optional_admin(request: Request) -> Admin | None:
    if hasattr(request.state, "admin"):
        return request.state.admin  # type: ignore[no-any-return]
    token = request.cookies.get(SESSION_COOKIE, "")
    admin = await page_read(request, accounts.session_admin, ctx_of(request).site, token) \
        if token else None
    request.state.admin = admin
    return admin


async def page_admin(request: Request) -> Admin:
    """The logged-in account of an admin page, else a redirect to the login page."""
    admin = await optional_admin(request)
    if admin is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginNeeded(path)
    return admin


async def site_admin(admin: Admin = Depends(page_admin)) -> Admin:
    if not admin.site_admin:
        raise HTTPException(403, "only a site admin may do this")
    return admin


# (site home, name, domain) -> (list id, secret, settings counter, settings): a list's
# settings (owners and moderators included) are read again only when the counter the
# store's triggers keep (list_counters.settings) moved, so a change made anywhere (the
# CLI, another web process) is seen at once. The secret is part of the check: a list
# deleted and made again can get the same id on SQLite, and its counter starts again.
_settings: dict[tuple[str, str, str], tuple[int, str, int, ListSettings]] = {}
_SETTINGS_MAX = 10_000
_LIST = (select(MailingList.id, ListCounter.settings, MailingList.secret)
         .outerjoin(ListCounter, ListCounter.list_id == MailingList.id)
         .where(MailingList.name == bindparam("name"), MailingList.domain == bindparam("domain")))


def list_of(request: Request, address: str) -> tuple[ListSettings, int]:
    """The list named by ``address`` (``name@domain``) in the URL and its id, or 404: one
    indexed read while its settings stay as they were."""
    site = ctx_of(request).site
    if "@" not in address or len(address) > 320:
        raise HTTPException(404, "no such list")
    name, _, domain = address.lower().partition("@")
    values = {"name": name, "domain": domain}
    rows = store.with_connection(site, lambda c: driver_rows(c, _LIST, values))
    row = rows[0] if rows else None
    if row is None:
        raise HTTPException(404, "no such list")
    list_id, version, secret = int(row[0]), int(row[1] or 0), str(row[2])
    key = (str(site.home), name, domain)
    hit = _settings.get(key)
    if hit is not None and hit[:3] == (list_id, secret, version):
        return hit[3], list_id
    try:
        settings = store.get_settings(site, name, domain)
    except PostroomError:
        raise HTTPException(404, "no such list") from None
    if len(_settings) >= _SETTINGS_MAX:
        _settings.clear()
    _settings[key] = (list_id, secret, version, settings)  # counter read first: never newer
    return settings, list_id


def list_settings(request: Request, address: str) -> ListSettings:
    """The list named by ``address`` (``name@domain``) in the URL, or 404."""
    return list_of(request, address)[0]


def need_role(request: Request, admin: Admin, settings: ListSettings, role: Role) -> Role:
    got = role_on(ctx_of(request).site, admin, settings)
    if got < role:
        what = "an owner" if role >= Role.OWNER else "a moderator"
        raise HTTPException(403, f"you are not {what}"
                                 f" of {settings.address}")
    return got


class ApiAuth:
    """An API route's dependency: a live bearer token with ``scope``."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> Admin:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "an API token is needed: Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})
        found = await run_in_threadpool(accounts.token_admin, ctx_of(request).site,
                                        token.strip())
        if found is None:
            raise HTTPException(401, "the token is unknown or revoked",
                                headers={"WWW-Authenticate": "Bearer"})
        admin, scopes = found
        if self.scope not in scopes:
            raise HTTPException(403, f"the token lacks the {self.scope!r} scope")
        request.state.admin = admin
        return admin
