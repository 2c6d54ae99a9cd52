"""The web app: ``create_app(runtime)`` builds the FastAPI application of a site.

Composition, outside in: uvicorn (with proxy headers believed only from ``[web]
trusted_proxies``) -> ``middleware.WebMiddleware`` (browser cookie, CSP and friends, request
latencies for /metrics) -> the routers. A page that needs a
login raises LoginNeeded, answered with a redirect to the login page; HTTP errors are
pages for browsers and JSON for the API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from postroom.runtime import Runtime
from postroom.web import admin, admin_site, api, archive, ops, public
from postroom.web.context import HERE, WebContext, load_key
from postroom.web.deps import LoginNeeded, login_url
from postroom.web.middleware import WebMiddleware

DESCRIPTION = """The REST API of a postroom site: lists, members, held posts, the queue,
address verification (the resolver, as `postroom verify`) and quiescent mode.

Authenticate with `Authorization: Bearer TOKEN`; tokens are made with
`postroom web-admin token LOGIN --scope ...` or on the account page, each with scopes
(`read`, `lists`, `queue`, `site`, `export`), and can be revoked. A token acts with its
account's rights: an owner's token reaches the owner's lists only."""


def create_app(runtime: Callable[[], Runtime], *, tls: bool = False) -> FastAPI:
    site = runtime().site
    app = FastAPI(title="postroom", version="1", description=DESCRIPTION,
                  docs_url="/api/docs", redoc_url=None, openapi_url="/api/v1/openapi.json",
                  swagger_ui_oauth2_redirect_url=None)
    app.state.ctx = WebContext(runtime, load_key(site.state_dir), tls=tls)
    app.add_middleware(WebMiddleware, tls=tls)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (public, archive, admin, admin_site, ops):
        app.include_router(module.router)
    app.include_router(public.oneclick)
    app.include_router(api.router)

    @app.exception_handler(LoginNeeded)
    async def _login(request: Request, exc: LoginNeeded) -> Response:
        return RedirectResponse(login_url(exc.next_path), status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": _plain(exc.errors())}, status_code=422)
        return _error(request, 400, "the request is not valid: " + "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()), None)

    return app


def _plain(errors: Any) -> Any:
    return [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]


def _error(request: Request, status: int, detail: str,
           headers: Mapping[str, str] | None) -> Response:
    if request.url.path.startswith("/api/") or "text/html" not in \
            request.headers.get("accept", "text/html"):
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    ctx = request.app.state.ctx
    response: Response = ctx.render(request, "error.html", status_code=status,
                                    status=status, detail=detail)
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response
