"""Admin accounts of the web interface, in the store (``postroom.store.web_models``).

    create_admin / set_password / delete_admin / all_admins / admin_by_login
    login(site, login, password, client)   -> Admin, or LoginRefused (why, for the log)
    new_session / session_admin / end_session
    new_api_token / token_admin / revoke_token / tokens_of
    new_reset / use_reset                   password reset by mail (one use, 1 hour)
    bump(site, key, limit)                  a daily counter; False once over the limit

Passwords are argon2id (``argon2-cffi``). After ``[web] login_failures`` wrong passwords in
a row an account is locked for ``lockout_minutes``, whatever password comes next; a
login for an unknown name costs the same hash as a known one. Secrets handed to a
client are kept as their SHA-256 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from postroom.lists.store import with_connection
from postroom.site import Site
from postroom.store import StoreValueError, UnknownUser, UserExists
from postroom.store.db import driver_rows, session
from postroom.store.lists import check_address
from postroom.store.users import validate_login
from postroom.store.web_models import (
    WebAdmin,
    WebApiToken,
    WebCounter,
    WebPasswordReset,
    WebSession,
)
from postroom.web.security import digest, new_secret

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anyone")
SCOPES = ("read", "lists", "queue", "site", "export")
RESET_MINUTES = 60


@dataclass(frozen=True, slots=True)
class Admin:
    id: int
    login: str
    email: str
    site_admin: bool


class LoginRefused(Exception):
    """Why a login failed (``locked``, ``failed``, ``disabled``): for the log only."""


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(when: datetime | None) -> datetime | None:
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def _admin(row: WebAdmin) -> Admin:
    return Admin(row.id, row.login, row.email, row.site_admin)


def create_admin(site: Site, login: str, password: str, *, email: str = "",
                 site_admin: bool = False) -> Admin:
    login = validate_login(login)
    email = check_address(email, "email") if email else ""
    if not password:
        raise StoreValueError("the password is empty")
    try:
        with session(site) as s:
            if s.scalar(select(WebAdmin.id).where(WebAdmin.login == login)) is not None:
                raise UserExists(login)
            row = WebAdmin(login=login, email=email, site_admin=site_admin,
                           password_hash=_hasher.hash(password))
            s.add(row)
            s.flush()
            return _admin(row)
    except IntegrityError:
        raise UserExists(login) from None


def set_password(site: Site, login: str, password: str) -> None:
    with session(site) as s:
        done = s.execute(update(WebAdmin).where(WebAdmin.login == login).values(
            password_hash=_hasher.hash(password), failures=0, locked_until=None))
        if not done.rowcount:  # type: ignore[attr-defined]
            raise UnknownUser(login)


def delete_admin(site: Site, login: str) -> None:
    with session(site) as s:
        row = s.scalars(select(WebAdmin).where(WebAdmin.login == login)).one_or_none()
        if row is None:
            raise UnknownUser(login)
        s.delete(row)


def all_admins(site: Site) -> list[Admin]:
    with session(site) as s:
        return [_admin(r) for r in s.scalars(select(WebAdmin).order_by(WebAdmin.login))]


def admin_by_login(site: Site, login: str) -> Admin | None:
    with session(site) as s:
        row = s.scalars(select(WebAdmin).where(WebAdmin.login == login)).one_or_none()
        return _admin(row) if row is not None else None


def login(site: Site, name: str, password: str) -> Admin:
    """The admin whose password this is; LoginRefused otherwise (and a failure counted)."""
    web = site.profile.web
    now = _now()
    with session(site) as s:
        row = s.scalars(select(WebAdmin).where(WebAdmin.login == name)).one_or_none()
        if row is None:
            _check(_DUMMY, password)
            raise LoginRefused("failed")
        locked = _aware(row.locked_until)
        if locked is not None and locked > now:
            raise LoginRefused("locked")
        if not _check(row.password_hash, password):
            row.failures += 1
            if row.failures >= web.login_failures:
                row.locked_until = now + timedelta(minutes=web.lockout_minutes)
                row.failures = 0
            raise_after = LoginRefused("failed")
        elif row.disabled:
            raise_after = LoginRefused("disabled")
        else:
            row.failures = 0
            row.locked_until = None
            if _hasher.check_needs_rehash(row.password_hash):
                row.password_hash = _hasher.hash(password)
            return _admin(row)
    raise raise_after


def _check(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


# -- sessions ---------------------------------------------------------------------------------

def new_session(site: Site, admin: Admin) -> str:
    """A fresh session id for ``admin`` (the cookie's value; the store keeps its hash)."""
    token = new_secret()
    hours = site.profile.web.session_hours
    with session(site) as s:
        s.execute(delete(WebSession).where(WebSession.expires < _now()))
        s.add(WebSession(id=digest(token), admin_id=admin.id,
                         expires=_now() + timedelta(hours=hours)))
    return token


# every admin page asks it: built once, and read without an ORM session
_SESSION = (select(WebSession.expires, WebAdmin.disabled, WebAdmin.id, WebAdmin.login,
                   WebAdmin.email, WebAdmin.site_admin)
            .join(WebAdmin, WebAdmin.id == WebSession.admin_id)
            .where(WebSession.id == bindparam("digest")))


def session_admin(site: Site, token: str) -> Admin | None:
    if not token:
        return None
    values = {"digest": digest(token)}
    rows = with_connection(site, lambda c: driver_rows(c, _SESSION, values))
    if not rows or rows[0][1]:
        return None
    row = rows[0]
    # SQLite's driver gives the stored text of the time (driver_rows), PostgreSQL a datetime
    expires = _aware(datetime.fromisoformat(row[0]) if isinstance(row[0], str) else row[0])
    if expires is None or expires < _now():
        return None
    return Admin(row[2], row[3], row[4], bool(row[5]))


def end_session(site: Site, token: str) -> None:
    with session(site) as s:
        s.execute(delete(WebSession).where(WebSession.id == digest(token)))


# -- API tokens -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    login: str
    name: str
    scopes: tuple[str, ...]
    created: datetime
    last_used: datetime | None
    revoked: bool


def new_api_token(site: Site, login: str, scopes: list[str], name: str = "") -> str:
    bad = [sc for sc in scopes if sc not in SCOPES]
    if bad or not scopes:
        raise StoreValueError(f"scopes {', '.join(bad) or '(none)'}: choose from "
                              f"{', '.join(SCOPES)}")
    token = "pr_" + new_secret()
    with session(site) as s:
        admin_id = s.scalar(select(WebAdmin.id).where(WebAdmin.login == login))
        if admin_id is None:
            raise UnknownUser(login)
        s.add(WebApiToken(admin_id=admin_id, name=name[:64], token_hash=digest(token),
                          scopes=" ".join(dict.fromkeys(scopes))))
    return token


def token_admin(site: Site, token: str) -> tuple[Admin, frozenset[str]] | None:
    """The admin and scopes of a live API token; None for an unknown or revoked one."""
    if not token:
        return None
    with session(site) as s:
        row = s.execute(select(WebApiToken, WebAdmin)
                        .join(WebAdmin, WebAdmin.id == WebApiToken.admin_id)
                        .where(WebApiToken.token_hash == digest(token))).first()
        if row is None or row[0].revoked or row[1].disabled:
            return None
        row[0].last_used = _now()
        return _admin(row[1]), frozenset(row[0].scopes.split())


def tokens_of(site: Site, login: str | None = None) -> list[TokenInfo]:
    query = (select(WebApiToken, WebAdmin.login)
             .join(WebAdmin, WebAdmin.id == WebApiToken.admin_id).order_by(WebApiToken.id))
    if login is not None:
        query = query.where(WebAdmin.login == login)
    with session(site) as s:
        return [TokenInfo(t.id, who, t.name, tuple(t.scopes.split()), t.created,
                          t.last_used, t.revoked) for t, who in s.execute(query).all()]


def revoke_token(site: Site, token_id: int, login: str | None = None) -> bool:
    """Revoke token ``token_id`` (of ``login`` only, when given); False if none matched."""
    query = update(WebApiToken).where(WebApiToken.id == token_id)
    if login is not None:
        query = query.where(WebApiToken.admin_id.in_(
            select(WebAdmin.id).where(WebAdmin.login == login).scalar_subquery()))
    with session(site) as s:
        return bool(s.execute(query.values(revoked=True)).rowcount)  # type: ignore[attr-defined]


# -- password reset ---------------------------------------------------------------------------

def new_reset(site: Site, login_or_email: str) -> tuple[Admin, str] | None:
    """A reset token for the account with this login or email; None if there is none."""
    with session(site) as s:
        row = s.scalars(select(WebAdmin).where(
            (WebAdmin.login == login_or_email) |
            ((WebAdmin.email == login_or_email.lower()) & (WebAdmin.email != "")))
            .order_by(WebAdmin.id)).first()
        if row is None or row.disabled or not row.email:
            return None
        token = new_secret()
        s.add(WebPasswordReset(id=digest(token), admin_id=row.id,
                               expires=_now() + timedelta(minutes=RESET_MINUTES)))
        return _admin(row), token


def use_reset(site: Site, token: str, password: str) -> Admin | None:
    """Set the password with a reset token (used up); None if unknown or expired."""
    with session(site) as s:
        reset = s.get(WebPasswordReset, digest(token))
        if reset is None:
            return None
        s.delete(reset)
        expires = _aware(reset.expires)
        admin = s.get(WebAdmin, reset.admin_id)
        if admin is None or expires is None or expires < _now():
            return None
        admin.password_hash = _hasher.hash(password)
        admin.failures, admin.locked_until = 0, None
        s.execute(delete(WebSession).where(WebSession.admin_id == admin.id))
        return _admin(admin)


# -- counters ---------------------------------------------------------------------------------

def bump(site: Site, key: str, limit: int) -> bool:
    """Count one ``key`` today; False (and not counted) once ``limit`` is reached."""
    day = _now().strftime("%Y-%m-%d")
    with session(site) as s:
        row = s.get(WebCounter, (key[:400], day), with_for_update=True)
        if row is None:
            s.execute(delete(WebCounter).where(WebCounter.day < day))
            s.add(WebCounter(key=key[:400], day=day, count=1))
            return True
        if row.count >= limit:
            return False
        row.count += 1
        return True
