"""The store: users, their sender addresses and mailing lists, in SQLAlchemy + Alembic.

SQLite (``SITE/postroom.db``) by default, PostgreSQL when ``database.url`` says so.

    db.py          engines, sessions, ``upgrade`` / ``current_revision`` (Alembic in code)
    models.py      the tables, as typed declarative models
    migrations/    the Alembic environment and its versions (hand-written operations)
    users.py       submission users: add, passwd, delete, list, check_password, addresses_of
    lists.py       mailing lists: create, delete, all; ``StoreLists``, the resolver's ListSource
    example.py     ``postroom init`` hook: create the store (and the example site's list)

This module imports nothing heavy, so ``postroom verify`` on a site without a store stays
fast; only its errors live here.

    PostroomError
     +-- StoreError          the database cannot be reached or is not at the schema we need
          +-- UserExists     add_user with a login that is taken
          +-- UnknownUser    passwd / delete / addresses_of for a login that is not there
          +-- ListExists     create_list for a name@domain that is taken
          +-- UnknownList    delete_list for a name@domain that is not there
          +-- StoreValueError  a bad login, password, address or list name
"""

from __future__ import annotations

from postroom.errors import EX_DATAERR, EX_NOUSER, EX_UNAVAILABLE, PostroomError

__all__ = [
    "ListExists",
    "StoreError",
    "StoreValueError",
    "UnknownList",
    "UnknownUser",
    "UserExists",
]


class StoreError(PostroomError):
    """The store cannot do what was asked; the message says why and what to run."""

    exit_code = EX_UNAVAILABLE


class StoreValueError(StoreError, ValueError):
    exit_code = EX_DATAERR


class UserExists(StoreError):
    exit_code = EX_DATAERR

    def __init__(self, login: str) -> None:
        self.login = login
        super().__init__(f"user {login!r} already exists (fix: pick another login, "
                         f"or 'postroom users passwd {login}' to change the password)")


class UnknownUser(StoreError):
    exit_code = EX_NOUSER

    def __init__(self, login: str) -> None:
        self.login = login
        super().__init__(f"no user {login!r} (fix: 'postroom users list' shows the users)")


class ListExists(StoreError):
    exit_code = EX_DATAERR

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(f"mailing list {address} already exists")


class UnknownList(StoreError):
    exit_code = EX_NOUSER

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(f"no mailing list {address} "
                         "(fix: 'postroom lists list' shows the lists)")
