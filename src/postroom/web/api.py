"""The REST API, ``/api/v1``, documented by the OpenAPI schema FastAPI makes
(``/api/v1/openapi.json``, pages at ``/api/docs``).

Every endpoint needs ``Authorization: Bearer TOKEN`` with its scope (``deps.ApiAuth``):
``read`` for GETs, ``lists`` to change members, settings and held posts, ``queue`` for
queue actions, ``site`` for quiescent mode. The token's account must also have the role:
owner (members, settings), moderator (held), site admin (queue, quiescent, status).
``verify`` answers as ``postroom verify`` does: the same resolver, the same lines.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from postroom.errors import EX_NOUSER, PostroomError
from postroom.lists import held as held_posts
from postroom.lists import store
from postroom.lists.listing import page_members
from postroom.lists.settings_text import parse_settings, settings_json
from postroom.lists.sync import parse_members
from postroom.runtime import load_resolver
from postroom.web import moderation, queue_ops
from postroom.web.accounts import Admin
from postroom.web.context import ctx_of
from postroom.web.deps import ApiAuth, list_settings, need_role
from postroom.web.rights import Role, lists_of

router = APIRouter(prefix="/api/v1", tags=["api"])
READ, LISTS, QUEUE, SITE = (Depends(ApiAuth(s)) for s in ("read", "lists", "queue", "site"))
QID = Path(pattern=r"^[0-9A-Za-z]{1,32}$", max_length=32)


class ListSummary(BaseModel):
    address: str
    role: str


class MemberOut(BaseModel):
    address: str
    display_name: str
    delivery_enabled: bool
    mode: str
    moderated: bool
    bounce_score: float


class MemberPageOut(BaseModel):
    total: int
    page: int
    per_page: int
    pages: int
    members: list[MemberOut]
    next_after: str = Field("", description="pass as ``after`` for the next page (one "
                            "index range however deep); empty on the last page")


class MembersIn(BaseModel):
    members: list[str] = Field(max_length=100_000, description="one member a string: an "
                               "address, or 'Display Name <address>'")


class AddReport(BaseModel):
    added: list[str]
    existing: list[str]


class RemoveReport(BaseModel):
    removed: list[str]
    not_members: list[str]


class SettingsIn(BaseModel):
    settings: dict[str, str] = Field(description="KEY: VALUE as `postroom lists set` takes "
                                     "them (lists comma separated)")


class HeldOut(BaseModel):
    id: int
    list: str
    sender: str
    subject: str
    received: str
    rule: str
    reason: str


class DecisionIn(BaseModel):
    reason: str = Field("", max_length=500)


class Said(BaseModel):
    said: str


class VerifyOut(BaseModel):
    lines: list[str]
    deliverable: bool
    exit_code: int


class QuiescentIn(BaseModel):
    quiescent: bool
    reason: str = Field("", max_length=200)


class QuiescentOut(BaseModel):
    quiescent: bool
    reason: str


class FlushIn(BaseModel):
    id: str | None = Field(None, pattern=r"^[0-9A-Za-z]{1,32}$")


def _owner(request: Request, admin: Admin, address: str, role: Role = Role.OWNER) -> Any:
    s = list_settings(request, address)
    need_role(request, admin, s, role)
    return s


def _site(admin: Admin) -> None:
    if not admin.site_admin:
        raise HTTPException(403, "only a site admin's token may do this")


def _bad(e: PostroomError) -> HTTPException:
    return HTTPException(400, str(e))


@router.get("/lists", response_model=list[ListSummary])
def lists(request: Request, admin: Admin = READ) -> Any:
    """The lists the token's account looks after."""
    return [{"address": a, "role": r.name.lower()}
            for a, r in lists_of(ctx_of(request).site, admin).items()]


@router.get("/lists/{address}", response_model=dict[str, Any])
def list_get(request: Request, address: str = Path(max_length=320), admin: Admin = READ) -> Any:
    """A list's settings (as `postroom lists show --json`)."""
    return settings_json(_owner(request, admin, address))


@router.patch("/lists/{address}", response_model=dict[str, Any])
def list_set(request: Request, body: SettingsIn, address: str = Path(max_length=320),
             admin: Admin = LISTS) -> Any:
    """Change settings; nothing is changed if any is bad (the error names each)."""
    s = _owner(request, admin, address)
    try:
        typed = parse_settings([f"{k}={v}" for k, v in body.settings.items()])
        return settings_json(store.update_settings(ctx_of(request).site, s.name, s.domain,
                                                   typed))
    except PostroomError as e:
        raise _bad(e) from None


@router.get("/lists/{address}/members", response_model=MemberPageOut)
def members(request: Request, address: str = Path(max_length=320),
            page: int = Query(1, ge=1, le=10**7),
            per_page: int = Query(100, ge=1, le=1000), search: str = Query("", max_length=200),
            after: str = Query("", max_length=320, description="the page after this "
                               "address (``next_after`` of the page before)"),
            admin: Admin = READ) -> Any:
    s = _owner(request, admin, address)
    p = page_members(ctx_of(request).site, s.name, s.domain, page, per_page, search,
                     after=after)
    return {"total": p.total, "page": p.page, "per_page": p.per_page, "pages": p.pages,
            "next_after": p.next_after,
            "members": [{"address": m.address, "display_name": m.display_name,
                         "delivery_enabled": m.delivery_enabled, "mode": m.mode.value,
                         "moderated": m.moderated, "bounce_score": m.bounce_score}
                        for m in p.members]}


@router.post("/lists/{address}/members", response_model=AddReport)
def members_add(request: Request, body: MembersIn, address: str = Path(max_length=320),
                admin: Admin = LISTS) -> Any:
    """Add members; none is added if any line is bad (each is named)."""
    s = _owner(request, admin, address)
    found, errors = parse_members(body.members, "member")
    if errors:
        raise HTTPException(400, "\n".join(errors))
    result = store.add_members(ctx_of(request).site, s.name, s.domain, found)
    return {"added": result.added, "existing": result.existing}


@router.delete("/lists/{address}/members/{member}", response_model=RemoveReport)
def members_remove(request: Request, address: str = Path(max_length=320),
                   member: str = Path(max_length=320),
                   admin: Admin = LISTS) -> Any:
    s = _owner(request, admin, address)
    removed, absent = store.remove_members(ctx_of(request).site, s.name, s.domain, [member])
    return {"removed": removed, "not_members": absent}


def _held_out(h: held_posts.Held) -> dict[str, Any]:
    return {"id": h.id, "list": h.list_address, "sender": h.sender, "subject": h.subject,
            "received": h.received.isoformat(), "rule": h.rule, "reason": h.reason}


@router.get("/held", response_model=list[HeldOut])
def held(request: Request, list: str | None = Query(None, max_length=320),
         admin: Admin = READ) -> Any:
    """Held posts of the lists the account moderates (or of one list)."""
    site = ctx_of(request).site
    mine = lists_of(site, admin)
    if list is not None:
        _owner(request, admin, list, Role.MODERATOR)
    return [_held_out(h) for h in held_posts.held_posts(site, list.lower() if list else None)
            if h.list_address in mine]


@router.post("/lists/{address}/held/{held_id}/{action}", response_model=Said)
def held_decide(request: Request, body: DecisionIn, address: str = Path(max_length=320),
                held_id: int = Path(ge=1, le=2**62),
                action: str = Path(pattern="^(approve|reject|discard)$"),
                admin: Admin = LISTS) -> Any:
    s = _owner(request, admin, address, Role.MODERATOR)
    try:
        said = moderation.decide(ctx_of(request).runtime(), s.address, held_id, action,
                                 body.reason)
    except moderation.NotHere as e:
        raise HTTPException(404, str(e)) from None
    return {"said": said}


@router.get("/queue", response_model=list[dict[str, Any]])
def queue(request: Request, admin: Admin = QUEUE) -> Any:
    """The queue, like `postroom queue` (the first 1000 messages)."""
    _site(admin)
    return queue_ops.listing(ctx_of(request).site)


def _queue_call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except PostroomError as e:
        raise HTTPException(404 if "no" in str(e).lower() else 400, str(e)) from None


@router.get("/queue/{qid}", response_model=dict[str, Any])
def queue_show(request: Request, qid: str = QID, admin: Admin = QUEUE) -> Any:
    _site(admin)
    return _queue_call(queue_ops.show, ctx_of(request).site, qid)


@router.post("/queue/{qid}/hold", response_model=Said)
def queue_hold(request: Request, qid: str = QID, admin: Admin = QUEUE) -> Any:
    _site(admin)
    _queue_call(queue_ops.hold, ctx_of(request).site, qid)
    return {"said": f"{qid}: held"}


@router.post("/queue/{qid}/release", response_model=Said)
def queue_release(request: Request, qid: str = QID, admin: Admin = QUEUE) -> Any:
    _site(admin)
    _queue_call(queue_ops.release, ctx_of(request).site, qid)
    return {"said": f"{qid}: released"}


@router.post("/queue/flush", response_model=dict[str, Any])
def queue_flush(request: Request, body: FlushIn, admin: Admin = QUEUE) -> Any:
    """Retry deferred deliveries now (every message, or the one named)."""
    _site(admin)
    return _queue_call(queue_ops.flush, ctx_of(request).site, body.id)


@router.get("/verify", response_model=VerifyOut)
def verify(request: Request, address: list[str] = Query(min_length=1, max_length=100),
           admin: Admin = READ) -> Any:
    """Where each address goes, in the lines `postroom verify` prints."""
    resolver = load_resolver(ctx_of(request).site.home)
    lines: list[str] = []
    ok = True
    for a in address:
        res = resolver.resolve(re.sub(r"[\r\n]", "", a)[:1000])
        lines += [route.sendmail_line() for route in res.routes]
        ok = ok and res.deliverable
    return {"lines": lines, "deliverable": ok, "exit_code": 0 if ok else EX_NOUSER}


@router.get("/quiescent", response_model=QuiescentOut)
def quiescent_get(request: Request, admin: Admin = READ) -> Any:
    site = ctx_of(request).site
    return {"quiescent": site.quiescent_now(), "reason": site.quiescent_reason()}


@router.put("/quiescent", response_model=QuiescentOut)
def quiescent_set(request: Request, body: QuiescentIn, admin: Admin = SITE) -> Any:
    _site(admin)
    site = ctx_of(request).site
    if body.quiescent:
        site.quiesce(body.reason or f"by {admin.login} with the API")
    else:
        site.resume()
    return {"quiescent": site.quiescent_now(), "reason": site.quiescent_reason()}


@router.get("/status", response_model=dict[str, Any])
def status(request: Request, admin: Admin = READ) -> Any:
    """The site status page as JSON (site admins)."""
    _site(admin)
    from postroom.web.status import status_of

    return status_of(ctx_of(request).site).as_dict()
