"""Submission users: logins with argon2 password hashes and the sender addresses they may use.

Every function takes the site (or a database URL) and opens its own short session, so they
can be called from any thread; ``check_password`` is meant for an asyncio server's
``loop.run_in_executor(None, check_password, site, login, password)``: the hashing runs in
the worker thread, the engine and the PasswordHasher are thread-safe and shared.

Logins are compared exactly. Addresses are kept in lower case and belong to one user.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
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
    "UserInfo",
    "add_user",
    "addresses_of",
    "check_password",
    "delete_user",
    "list_users",
    "normalise_address",
    "set_password",
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


# -- checks -----------------------------------------------------------------------------------

def _check_login(login: str) -> str:
    if not login or len(login) > LOGIN_MAX:
        raise StoreValueError(f"login {login!r} must be 1 to {LOGIN_MAX} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in login):
        raise StoreValueError(f"login {login!r} has spaces or control characters")
    return login


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


def list_users(site: Site | str | URL) -> list[UserInfo]:
    """Every user, by login."""
    with session(site) as s:
        users = s.scalars(select(User).options(selectinload(User.addresses))
                          .order_by(User.login)).all()
        return [UserInfo(u.login, tuple(a.address for a in u.addresses), u.created,
                         u.disabled) for u in users]


def addresses_of(site: Site | str | URL, login: str) -> list[str]:
    """The sender addresses ``login`` may use, sorted; UnknownUser if there is no such login."""
    with session(site) as s:
        user_id = s.scalar(select(User.id).where(User.login == login))
        if user_id is None:
            raise UnknownUser(login)
        return list(s.scalars(select(UserAddress.address)
                              .where(UserAddress.user_id == user_id)
                              .order_by(UserAddress.address)))


def check_password(site: Site | str | URL, login: str, password: str) -> bool:
    """True when ``login`` exists, is not disabled and ``password`` is its password.

    An unknown login costs the same hashing time as a known one. A hash made with older
    parameters is replaced by a fresh one. Raises StoreError only when the database cannot
    be used (an SMTP server answers that with a temporary failure).
    """
    with session(site) as s:
        row = s.execute(select(User.id, User.password_hash, User.disabled)
                        .where(User.login == login)).one_or_none()
    if row is None:
        _waste_time(password)
        return False
    user_id, stored, disabled = row
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if disabled:
        return False
    if _hasher.check_needs_rehash(stored):
        fresh = _hasher.hash(password)
        with session(site) as s:  # only if nobody changed the password meanwhile
            s.execute(update(User).where(User.id == user_id, User.password_hash == stored)
                      .values(password_hash=fresh))
    return True


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
