"""The web's defences, in one place.

CSRF: every browser gets a random ``pr_browser`` cookie (HttpOnly, SameSite=Lax, Secure
under HTTPS). A form's token is ``HMAC(web key, "csrf" 0 session-or-browser value)``: the
session cookie's value once logged in, the browser cookie's before. Every POST from a form
carries it (``csrf_field``) and ``csrf_protect`` (a router dependency) refuses a POST
without the right one with 403. The RFC 8058 one-click endpoint and the token-authenticated
API take no cookies and need none.

Headers on every answer: a Content-Security-Policy allowing nothing from elsewhere and
no inline script, ``nosniff``, no framing, no referrer sent off the site; admin pages
are not cached.

Addresses: ``client_ip`` is the peer, or what a trusted proxy says (uvicorn's proxy
headers handling, configured with ``[web] trusted_proxies`` only).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable

from fastapi import HTTPException, Request
from markupsafe import Markup, escape
from starlette.responses import Response

BROWSER_COOKIE = "pr_browser"
SESSION_COOKIE = "pr_session"
CSRF_FIELD = "csrf_token"

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


DOCS_CSP = ("default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; "
            "style-src 'self' https://cdn.jsdelivr.net; script-src 'self' 'unsafe-inline' "
            "https://cdn.jsdelivr.net; frame-ancestors 'none'; base-uri 'none'")


def mac(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()


def digest(secret: str) -> str:
    """How a secret sent by a client (session id, API token) is kept in the store."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _csrf_base(request: Request) -> str:
    return (request.cookies.get(SESSION_COOKIE) or getattr(request.state, "browser", "")
            or request.cookies.get(BROWSER_COOKIE, ""))


def csrf_token(request: Request) -> str:
    base = getattr(request.state, "csrf_base", None) or _csrf_base(request)
    return mac(request.app.state.ctx.key, "csrf", base)


def csrf_field(request: Request) -> Markup:
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" '
                  f'value="{escape(csrf_token(request))}">')


async def csrf_protect(request: Request) -> None:
    """Router dependency: a POST must carry the CSRF token of this browser or session."""
    if request.method != "POST":
        return
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    base = _csrf_base(request)
    if not isinstance(sent, str) or not base or not hmac.compare_digest(
            sent, mac(request.app.state.ctx.key, "csrf", base)):
        raise HTTPException(403, "the form has expired or came from another site: "
                                 "reload the page and send it again")


def secure_cookies(request: Request) -> bool:
    return bool(request.app.state.ctx.tls) or request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, *,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax",
                        secure=secure_cookies(request), path="/")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def in_networks(address: str, networks: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def safe_next(target: str | None, default: str = "/admin/") -> str:
    """Where to go after login: a path on this site only (no ``//host``, no scheme, no
    backslash tricks), else ``default``."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(c in target for c in "\\\r\n\t") or ":" in target.split("?", 1)[0]:
        return default
    return target
