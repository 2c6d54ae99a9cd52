"""One pure ASGI middleware around the app (Starlette's ``@app.middleware("http")`` costs a
task and a stream per request; this costs a dict lookup): it gives a browser without one
its ``pr_browser`` cookie (set in the request's state first, so the page's CSRF tokens
match it), adds the security headers of ``security``, and times the request for
``/metrics``."""

from __future__ import annotations

import time
from http.cookies import SimpleCookie
from typing import Any

from postroom.web.metrics import LATENCY
from postroom.web.security import BROWSER_COOKIE, CSP, DOCS_CSP, new_secret

Scope = dict[str, Any]
Message = dict[str, Any]


def _cookie_of(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header: as if there were none
                return None
            morsel = jar.get(name)
            return morsel.value if morsel is not None else None
    return None


class WebMiddleware:
    def __init__(self, app: Any, tls: bool = False) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope.get("path", "")
        fresh = None
        if not _cookie_of(scope, BROWSER_COOKIE):
            fresh = new_secret()
            scope.setdefault("state", {})["browser"] = fresh
        secure = self.tls or scope.get("scheme") == "https"
        extra = [(b"content-security-policy", (DOCS_CSP if path == "/api/docs" else CSP).encode()),
                 (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                 (b"referrer-policy", b"same-origin")]
        if path.startswith(("/admin", "/api")):
            extra.append((b"cache-control", b"no-store"))
        if fresh is not None:
            extra.append((b"set-cookie", (
                f"{BROWSER_COOKIE}={fresh}; HttpOnly; Path=/; SameSite=lax"
                + ("; Secure" if secure else "")).encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in have or k == b"set-cookie"]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            LATENCY.labels(name, scope.get("method", "")).observe(time.perf_counter() - start)
