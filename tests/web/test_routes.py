"""The route table holds the security model: a test walks every route of the app, so a
new route that forgets its check fails here.

* Every route outside PUBLIC refuses a request without a login or token (a redirect to
  the login page, 401 or 403), whatever its method.
* Every POST of a browser form refuses a request without its CSRF token (403), even with
  a valid session; only the RFC 8058 one-click endpoint and the token-authenticated API
  are exempt (they take no cookies).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import requests
from fastapi import FastAPI
from fastapi.routing import APIRoute

from postroom import runtime
from postroom.web.app import create_app
from tests.web.conftest import LIST, Web

# (method, path) open to anyone, each for a reason
PUBLIC = {
    ("GET", "/"), ("GET", "/lists/"), ("GET", "/lists/{address}/"),
    ("POST", "/lists/{address}/join"), ("POST", "/lists/{address}/leave"),  # CSRF + mail
    ("GET", "/lists/{address}/confirm/{token}"), ("POST", "/lists/{address}/confirm/{token}"),
    ("GET", "/lists/{list_id}/unsubscribe"), ("POST", "/lists/{list_id}/unsubscribe"),
    ("GET", "/admin/login"), ("POST", "/admin/login"),
    ("GET", "/admin/reset"), ("POST", "/admin/reset"),
    ("GET", "/admin/reset/{token}"), ("POST", "/admin/reset/{token}"),
    ("POST", "/admin/logout"),
    ("GET", "/healthz"),
    ("GET", "/metrics"), ("GET", "/export/valid-addresses"),  # networks, else a token
    ("GET", "/api/v1/openapi.json"), ("GET", "/api/docs"),
}
# archive pages follow the list's archive policy (tests/web/test_archive.py)
ARCHIVE = "/lists/{address}/archive"
CSRF_EXEMPT = {"/lists/{list_id}/unsubscribe", "/admin/login"}
VALUES = {"address": LIST, "list_id": "physics.inf.example.ac.uk", "month": "2026-11",
          "msg_id": "1", "index": "0", "held_id": "1", "action": "approve", "token": "x",
          "qid": "AAAAAAAAAAAAA", "member": "ann@example.net"}


def app_of(site: Path) -> FastAPI:
    rt = runtime.build(site)
    return create_app(lambda: rt)


def flat_routes(app: FastAPI) -> list[Any]:
    """The app's routes with included routers flattened (FastAPI >= 0.16x keeps an
    included router as one lazy entry; ``iter_route_contexts`` walks into it)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: the routes are flat already
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def routes(site: Path) -> list[tuple[str, str]]:
    app = app_of(site)
    out = []
    for r in flat_routes(app):
        path = getattr(r, "path", "") or ""
        methods = getattr(r, "methods", None) or getattr(r.original_route, "methods", None) \
            if hasattr(r, "original_route") else getattr(r, "methods", None)
        for method in sorted(methods or ()):
            if method != "HEAD":
                out.append((method, path))
    return out


def url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: VALUES[m.group(1)], path)


def test_every_route_is_public_by_name_or_refuses_without_auth(web: Web) -> None:
    table = routes(web.site)
    assert len(table) > 40  # the walk sees the whole app
    guarded = [(m, p) for m, p in table if (m, p) not in PUBLIC and not p.startswith(ARCHIVE)]
    assert any(p.startswith("/api/v1/") for _, p in guarded)
    assert any(p.startswith("/admin/") for _, p in guarded)
    open_ = []
    for method, path in guarded:
        r = requests.request(method, web.url + url(path), allow_redirects=False, timeout=30,
                             json={} if path.startswith("/api/") else None)
        refused = r.status_code in (401, 403) or (
            r.status_code == 303 and r.headers["Location"].startswith("/admin/login"))
        if not refused:
            open_.append(f"{method} {path}: {r.status_code}")
    assert open_ == []


def test_every_form_post_needs_its_csrf_token(web: Web) -> None:
    s = web.login("root")  # a site admin passes every role check
    posts = [p for m, p in routes(web.site)
             if m == "POST" and not p.startswith("/api/") and p not in CSRF_EXEMPT]
    assert len(posts) > 10
    let_through = []
    for path in posts:
        r = s.post(web.url + url(path), data={"x": "1"}, allow_redirects=False, timeout=30)
        if r.status_code != 403:
            let_through.append(f"POST {path}: {r.status_code}")
    assert let_through == []
    # and the session still works: nothing above changed anything
    assert web.get("/admin/", s).status_code == 200


def test_api_routes_are_all_in_the_schema(web: Web) -> None:
    schema = requests.get(web.url + "/api/v1/openapi.json", timeout=30).json()
    documented = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    app = app_of(web.site)
    api = {(m, r.path) for r in flat_routes(app)
           if isinstance(getattr(r, "original_route", r), APIRoute)
           and r.path.startswith("/api/v1/") for m in r.original_route.methods}
    assert api <= documented
