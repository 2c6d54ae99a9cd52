"""Submission users: add, check, passwd, delete, addresses; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from postroom.site import Site
from postroom.store import StoreValueError, UnknownUser, UserExists
from postroom.store import users as store_users
from postroom.store.db import session, upgrade
from postroom.store.models import User, UserAddress
from postroom.store.users import (
    add_user,
    addresses_of,
    check_password,
    delete_user,
    list_users,
    set_password,
)


def _hash_of(site: Site, login: str) -> str:
    with session(site) as s:
        value = s.scalar(select(User.password_hash).where(User.login == login))
    assert value is not None
    return value


def test_add_and_check(ready_site: Site) -> None:
    info = add_user(ready_site, "alice", "correct horse",
                    ["Alice@Inf.Example.AC.UK", "alice@lists.inf.example.ac.uk"])
    assert info.addresses == ("alice@inf.example.ac.uk", "alice@lists.inf.example.ac.uk")
    assert check_password(ready_site, "alice", "correct horse")
    assert not check_password(ready_site, "alice", "wrong horse")
    assert not check_password(ready_site, "alice", "")
    assert not check_password(ready_site, "Alice", "correct horse")  # logins are exact
    assert not check_password(ready_site, "nobody", "correct horse")
    assert addresses_of(ready_site, "alice") == ["alice@inf.example.ac.uk",
                                                 "alice@lists.inf.example.ac.uk"]
    assert _hash_of(ready_site, "alice").startswith("$argon2id$")


def test_duplicate_login_and_taken_address(ready_site: Site) -> None:
    add_user(ready_site, "alice", "pw1", ["alice@inf.example.ac.uk"])
    with pytest.raises(UserExists, match="'alice' already exists"):
        add_user(ready_site, "alice", "pw2")
    with pytest.raises(StoreValueError, match="already belongs to user 'alice'"):
        add_user(ready_site, "bob", "pw", ["ALICE@inf.example.ac.uk"])
    assert [u.login for u in list_users(ready_site)] == ["alice"]
    assert check_password(ready_site, "alice", "pw1")


@pytest.mark.parametrize(("login", "password", "addresses", "message"), [
    ("", "pw", [], "login"),
    ("a b", "pw", [], "spaces"),
    ("alice", "", [], "empty"),
    ("alice", "a\nb", [], "line-break"),
    ("alice", "pw", ["alice"], "needs a domain"),
    ("alice", "pw", ["a%b@inf.example.ac.uk"], "% hack"),
])
def test_bad_input(ready_site: Site, login: str, password: str, addresses: list[str],
                   message: str) -> None:
    with pytest.raises(StoreValueError, match=message):
        add_user(ready_site, login, password, addresses)


def test_passwd_and_delete(ready_site: Site) -> None:
    add_user(ready_site, "alice", "old", ["alice@inf.example.ac.uk"])
    add_user(ready_site, "bob", "bobs", ["bob@inf.example.ac.uk"])
    set_password(ready_site, "alice", "new")
    assert check_password(ready_site, "alice", "new")
    assert not check_password(ready_site, "alice", "old")
    delete_user(ready_site, "alice")
    assert not check_password(ready_site, "alice", "new")
    assert [u.login for u in list_users(ready_site)] == ["bob"]
    with session(ready_site) as s:  # the addresses went with the user (ON DELETE CASCADE)
        assert list(s.scalars(select(UserAddress.address))) == ["bob@inf.example.ac.uk"]
    # the address is free again
    add_user(ready_site, "carol", "c", ["alice@inf.example.ac.uk"])


def test_unknown_user_errors(ready_site: Site) -> None:
    with pytest.raises(UnknownUser, match="no user 'ghost'"):
        set_password(ready_site, "ghost", "pw")
    with pytest.raises(UnknownUser):
        delete_user(ready_site, "ghost")
    with pytest.raises(UnknownUser):
        addresses_of(ready_site, "ghost")
    assert UnknownUser("x").exit_code == 67


def test_disabled_user_cannot_log_in(ready_site: Site) -> None:
    add_user(ready_site, "alice", "pw")
    with session(ready_site) as s:
        s.execute(update(User).where(User.login == "alice").values(disabled=True))
    assert not check_password(ready_site, "alice", "pw")
    assert list_users(ready_site)[0].disabled


def test_old_hash_is_replaced_on_login(ready_site: Site) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1).hash("pw")
    add_user(ready_site, "alice", "placeholder")
    with session(ready_site) as s:
        s.execute(update(User).where(User.login == "alice").values(password_hash=weak))
    assert check_password(ready_site, "alice", "pw")
    fresh = _hash_of(ready_site, "alice")
    assert fresh != weak
    assert not store_users._hasher.check_needs_rehash(fresh)
    assert check_password(ready_site, "alice", "pw")
    assert _hash_of(ready_site, "alice") == fresh  # no rehash the second time


def test_garbage_hash_is_a_failed_login_not_a_crash(ready_site: Site) -> None:
    add_user(ready_site, "alice", "pw")
    with session(ready_site) as s:
        s.execute(update(User).where(User.login == "alice").values(password_hash="garbage"))
    assert not check_password(ready_site, "alice", "pw")


async def test_check_password_from_executor_threads(ready_site: Site) -> None:
    add_user(ready_site, "alice", "pw")
    add_user(ready_site, "bob", "pw2")
    loop = asyncio.get_running_loop()
    cases = [("alice", "pw", True), ("bob", "pw2", True), ("alice", "x", False),
             ("ghost", "pw", False)] * 6
    results = await asyncio.gather(*(
        loop.run_in_executor(None, check_password, ready_site, login, pw)
        for login, pw, _ in cases))
    assert results == [ok for _, _, ok in cases]


def test_real_argon2_parameters(make_site: Callable[..., Site],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The other tests hash cheaply (conftest); this one, on SQLite only, as shipped."""
    monkeypatch.setattr(store_users, "_hasher", PasswordHasher())
    site = make_site()
    upgrade(site)
    add_user(site, "alice", "pw")
    stored = _hash_of(site, "alice")
    assert stored.startswith("$argon2id$") and "m=65536" in stored
    assert check_password(site, "alice", "pw")
    assert not check_password(site, "alice", "pw2")
    assert _hash_of(site, "alice") == stored
