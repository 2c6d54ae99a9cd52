"""Submission users: logins with argon2 password hashes and the sender addresses they may use.

Every function takes the site (or a database URL) and opens its own short session, so they
can be called from any thread; ``check_password`` is meant for an asyncio server's
``loop.run_in_executor(None, check_password, site, login, password)``: the hashing runs in
the worker thread, the engine and the PasswordHasher are thread-safe and shared.

Logins are compared exactly. Addresses are kept in lower case and belong to one user.

A disabled user keeps its password and addresses but cannot log in (``verify_login`` says
``DISABLED`` when the password was right, so the log can say why), and may send from none
of its addresses (``addresses_of`` is empty), so a session that logged in before the user
was disabled cannot start another message either. The password policy of the commands is
``postroom.store.passwords``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from postroom import addresses as addr_mod
from postroom.errors import AddressError
from postroom.store import StoreValueError, UnknownUser, UserExists
from postroom.store.db import session
from postroom.store.models import ADDRESS_MAX, LOGIN_MAX, User, UserAddress

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.orm import Session

    from postroom.site import Site

__all__ = [
    "LoginCheck",
    "UserInfo",
    "add_addresses",
    "add_user",
    "addresses_of",
    "check_password",
    "delete_user",
    "get_user",
    "list_users",
    "normalise_address",
    "remove_addresses",
    "set_disabled",
    "set_password",
    "validate_login",
    "verify_login",
]

_hasher = PasswordHasher()  # argon2id with the library's current defaults; thread-safe
_dummy_hash: str | None = None
_dummy_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class UserInfo:
    login: str
    addresses: tuple[str, ...]
    created: datetime
    disabled: bool


class LoginCheck(StrEnum):
    """What ``verify_login`` found (for the log; a client is told only "failed")."""

    OK = "ok"
    FAILED = "failed"      # no such login, or the wrong password
    DISABLED = "disabled"  # the right password of a disabled user


# -- checks -----------------------------------------------------------------------------------

def _check_login(login: str) -> str:
    if not login or len(login) > LOGIN_MAX:
        raise StoreValueError(f"login {login!r} must be 1 to {LOGIN_MAX} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in login):
        raise StoreValueError(f"login {login!r} has spaces or control characters")
    return login


def validate_login(login: str) -> str:
    """``login`` if it can be a login name, else StoreValueError (what add_user checks)."""
    return _check_login(login)


def _check_password(password: str) -> str:
    if not password:
        raise StoreValueError("the password is empty")
    if "\0" in password or "\n" in password or "\r" in password:
        raise StoreValueError("the password has NUL or line-break characters")
    return password


def normalise_address(address: str) -> str:
    """``Alice@Inf.Example.AC.UK`` -> ``alice@inf.example.ac.uk``; StoreValueError if bad."""
    try:
        parsed = addr_mod.parse(address)
    except AddressError as e:
        raise StoreValueError(f"sender address {address!r}: {e.reason}") from None
    if not parsed.domain:
        raise StoreValueError(f"sender address {address!r} needs a domain (user@domain)")
    text = str(parsed).lower()
    if len(text) > ADDRESS_MAX:
        raise StoreValueError(f"sender address {address!r} is too long")
    return text


def _user(s: Session, login: str) -> User:
    user = s.scalars(select(User).where(User.login == login)).one_or_none()
    if user is None:
        raise UnknownUser(login)
    return user


def _taken(s: Session, wanted: list[str]) -> None:
    if not wanted:
        return
    rows = s.execute(select(UserAddress.address, User.login).join(User)
                     .where(UserAddress.address.in_(wanted))).all()
    if rows:
        address, owner = rows[0]
        raise StoreValueError(f"sender address {address} already belongs to user {owner!r}")


# -- public -----------------------------------------------------------------------------------

def add_user(site: Site | str | URL, login: str, password: str,
             addresses: Iterable[str] = ()) -> UserInfo:
    """Create a user; UserExists if the login is taken, StoreValueError for bad input."""
    _check_login(login)
    wanted = sorted({normalise_address(a) for a in addresses})
    password_hash = _hasher.hash(_check_password(password))
    try:
        with session(site) as s:
            if s.scalar(select(User.id).where(User.login == login)) is not None:
                raise UserExists(login)
            _taken(s, wanted)
            user = User(login=login, password_hash=password_hash,
                        addresses=[UserAddress(address=a) for a in wanted])
            s.add(user)
            s.flush()
            info = UserInfo(user.login, tuple(wanted), user.created, user.disabled)
    except IntegrityError as e:  # a concurrent add won the race
        with session(site) as s:
            if s.scalar(select(User.id).where(User.login == login)) is not None:
                raise UserExists(login) from e
            _taken(s, wanted)
        raise
    return info


def set_password(site: Site | str | URL, login: str, password: str) -> None:
    """Replace a user's password; UnknownUser if there is no such login."""
    password_hash = _hasher.hash(_check_password(password))
    with session(site) as s:
        _user(s, login).password_hash = password_hash


def delete_user(site: Site | str | URL, login: str) -> None:
    """Delete a user and their sender addresses; UnknownUser if there is no such login."""
    with session(site) as s:
        s.delete(_user(s, login))


def set_disabled(site: Site | str | URL, login: str, disabled: bool) -> bool:
    """Disable or enable a user; True if that changed it (False: it already was).
    UnknownUser if there is no such login."""
    with session(site) as s:
        user = _user(s, login)
        if user.disabled == disabled:
            return False
        user.disabled = disabled
        return True


def get_user(site: Site | str | URL, login: str) -> UserInfo:
    """One user, with all its sender addresses (also while disabled); UnknownUser if there
    is no such login."""
    with session(site) as s:
        user = s.scalars(select(User).options(selectinload(User.addresses))
                         .where(User.login == login)).one_or_none()
        if user is None:
            raise UnknownUser(login)
        return _info(user)


def add_addresses(site: Site | str | URL, login: str, addresses: Iterable[str]) -> UserInfo:
    """Give ``login`` more sender addresses (those it has already are no change).
    StoreValueError for a bad address or one that belongs to another user."""
    wanted = sorted({normalise_address(a) for a in addresses})
    new: list[str] = []
    try:
        with session(site) as s:
            user = _user(s, login)
            have = {a.address for a in user.addresses}
            new = [a for a in wanted if a not in have]
            _taken(s, new)
            user.addresses.extend(UserAddress(address=a) for a in new)
    except IntegrityError as e:  # a concurrent add took one of them
        with session(site) as s:
            _taken(s, new)
        raise StoreValueError("a sender address was taken meanwhile; try again") from e
    return get_user(site, login)


def remove_addresses(site: Site | str | URL, login: str,
                     addresses: Iterable[str]) -> UserInfo:
    """Take sender addresses from ``login``; StoreValueError (and no change) if one of
    them is not its."""
    wanted = sorted({normalise_address(a) for a in addresses})
    with session(site) as s:
        user = _user(s, login)
        have = {a.address for a in user.addresses}
        missing = [a for a in wanted if a not in have]
        if missing:
            raise StoreValueError(f"user {login!r} has no sender address {missing[0]} "
                                  f"(fix: 'postroom users addresses {login}' lists them)")
        s.execute(delete(UserAddress).where(UserAddress.user_id == user.id,
                                            UserAddress.address.in_(wanted)))
    return get_user(site, login)


def _info(user: User) -> UserInfo:
    return UserInfo(user.login, tuple(a.address for a in user.addresses), user.created,
                    user.disabled)


def list_users(site: Site | str | URL) -> list[UserInfo]:
    """Every user, by login."""
    with session(site) as s:
        users = s.scalars(select(User).options(selectinload(User.addresses))
                          .order_by(User.login)).all()
        return [_info(u) for u in users]


def addresses_of(site: Site | str | URL, login: str) -> list[str]:
    """The sender addresses ``login`` may use now, sorted: none while it is disabled.
    UnknownUser if there is no such login."""
    with session(site) as s:
        row = s.execute(select(User.id, User.disabled).where(User.login == login)).one_or_none()
        if row is None:
            raise UnknownUser(login)
        if row.disabled:
            return []
        return list(s.scalars(select(UserAddress.address)
                              .where(UserAddress.user_id == row.id)
                              .order_by(UserAddress.address)))


def check_password(site: Site | str | URL, login: str, password: str) -> bool:
    """True when ``login`` exists, is not disabled and ``password`` is its password
    (``verify_login`` also says why not)."""
    return verify_login(site, login, password) is LoginCheck.OK


def verify_login(site: Site | str | URL, login: str, password: str) -> LoginCheck:
    """OK when ``login`` exists, is not disabled and ``password`` is its password; DISABLED
    for the right password of a disabled user; FAILED otherwise.

    An unknown login costs the same hashing time as a known one, and a disabled one the
    same as an enabled one. A hash made with older parameters is replaced by a fresh one.
    Raises StoreError only when the database cannot be used (an SMTP server answers that
    with a temporary failure).
    """
    with session(site) as s:
        row = s.execute(select(User.id, User.password_hash, User.disabled)
                        .where(User.login == login)).one_or_none()
    if row is None:
        _waste_time(password)
        return LoginCheck.FAILED
    user_id, stored, disabled = row
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return LoginCheck.FAILED
    if disabled:
        return LoginCheck.DISABLED
    if _hasher.check_needs_rehash(stored):
        fresh = _hasher.hash(password)
        with session(site) as s:  # only if nobody changed the password meanwhile
            s.execute(update(User).where(User.id == user_id, User.password_hash == stored)
                      .values(password_hash=fresh))
    return LoginCheck.OK


def _waste_time(password: str) -> None:
    global _dummy_hash
    if _dummy_hash is None:
        with _dummy_lock:
            if _dummy_hash is None:
                _dummy_hash = _hasher.hash("postroom: no such user")
    try:
        _hasher.verify(_dummy_hash, password)
    except VerificationError:
        pass
