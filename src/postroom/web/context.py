"""What every request of the web app reads: the site's runtime in force (profile, maps,
resolver), the web section of the profile, the key that signs CSRF and form tokens, the
templates. One WebContext per app; the runtime comes from the server's Reloader, so a
``postroom reload`` reaches the web pages too."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates

from postroom.runtime import Runtime
from postroom.site import Site
from postroom.site.profile_web import WebSection

HERE = Path(__file__).parent
KEY_FILE = "web.key"  # in state/: signs CSRF and form tokens; a new one logs everyone out


def load_key(state_dir: Path) -> bytes:
    """The site's web key (32 random bytes, made on first use, 0600)."""
    path = state_dir / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    try:
        os.link(tmp, path)  # the first writer wins; a racing process reads its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(HERE / "templates"))
    env = t.env
    env.autoescape = True
    env.auto_reload = False  # the templates ship with the code: no stat of each per page
    from postroom.web.reading import obfuscate

    env.filters["obfuscate"] = obfuscate
    return t


@dataclass
class WebContext:
    runtime: Callable[[], Runtime]
    key: bytes
    templates: Jinja2Templates = field(default_factory=templates)
    tls: bool = False

    @property
    def site(self) -> Site:
        return self.runtime().site

    @property
    def web(self) -> WebSection:
        return self.site.profile.web

    def render(self, request: Request, name: str, status_code: int = 200,
               **values: Any) -> Any:
        from postroom.web.security import csrf_field

        values.setdefault("csrf", csrf_field(request))
        values.setdefault("me", getattr(request.state, "admin", None))
        return self.templates.TemplateResponse(request, name, values,
                                               status_code=status_code)


def ctx_of(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx
