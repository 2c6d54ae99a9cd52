"""Engines, sessions and schema migrations for the store.

``engine_for(site)`` / ``open_store(url)`` give a pooled Engine, one per database URL and
process (a forked worker gets its own), safe to use from any thread, e.g. from an asyncio
server through ``run_in_executor``. SQLite connections run in WAL mode with foreign keys on.

``upgrade(site)`` brings the schema to the newest Alembic revision; no ``alembic.ini`` is
needed: the configuration is built here and the scripts are ``postroom.store:migrations``.

A site's URL is ``database.url`` from the profile, else ``sqlite:///SITE/postroom.db``; a
relative SQLite path is taken relative to the site home, and ``postgresql://`` means
``postgresql+psycopg://`` (psycopg 3, the driver postroom depends on).
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from postroom.store import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

    from postroom.site import Site

SCRIPT_LOCATION = "postroom.store:migrations"

_engines: dict[tuple[int, str], Engine] = {}  # (pid, url) -> engine
_engines_lock = threading.Lock()


# -- URLs -------------------------------------------------------------------------------------

def store_url(where: Site | str | URL) -> URL:
    """The normalised SQLAlchemy URL of a site's store (or of a URL given directly)."""
    if isinstance(where, (str, URL)):
        return _normalised(where, None)
    return _normalised(where.database_url, where.home)


@functools.lru_cache(maxsize=256)  # every store call asks: parsing a URL is not free
def _normalised(raw: str | URL, home: Path | None) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError as e:
        raise StoreError(f"database URL {raw!r} is not valid: {e} "
                         "(fix: database.url = \"postgresql://USER@HOST/DB\", "
                         "or leave it empty for SITE/postroom.db)") from None
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:"):
        path = Path(url.database)
        if not path.is_absolute() and home is not None:
            url = url.set(database=str(home / path))
    return url


def describe(url: Site | str | URL) -> str:
    """The URL with its password hidden, for messages."""
    return store_url(url).render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL; None for other backends and in-memory databases."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):
        return None
    return Path(url.database)


def exists(where: Site | str | URL) -> bool:
    """False only when the store is a SQLite file that has not been made yet."""
    path = sqlite_path(store_url(where))
    return path is None or path.exists()


# -- engines ----------------------------------------------------------------------------------

def _new_engine(url: URL, *, foreign_keys: bool = True) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
                cursor.execute("PRAGMA busy_timeout=5000")
            finally:
                cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def open_store(url: str | URL) -> Engine:
    """The shared Engine for ``url`` in this process (created on first use)."""
    u = store_url(url)
    key = (os.getpid(), u.render_as_string(hide_password=False))
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _new_engine(u)
    return engine


# (pid, database.url, home) -> engine: a web page asks several times a request, and
# working out the URL again costs more than the pooled connection it leads to
_site_engines: dict[tuple[int, str, Path], Engine] = {}


def engine_for(site: Site) -> Engine:
    """The shared Engine of a site's store."""
    key = (os.getpid(), site.profile.database.url, site.home)
    engine = _site_engines.get(key)
    if engine is None:
        engine = _site_engines[key] = open_store(store_url(site))
    return engine


def dispose_engines() -> None:
    """Close every pooled connection of this process (tests; before dropping a database)."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
        _site_engines.clear()
    for engine in engines:
        engine.dispose()


def _after_fork_in_child() -> None:
    # The parent's pooled connections must not be used, nor closed (closing a PostgreSQL
    # connection would end the parent's session on the shared socket).
    for engine in list(_engines.values()):
        engine.dispose(close=False)
    _engines.clear()
    _site_engines.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def session(where: Site | str | URL) -> Iterator[Session]:
    """An ORM session that commits when the block ends and rolls back on an exception.

    Database errors come out as StoreError saying what to do; IntegrityError is left to the
    caller, which knows which constraint means what.
    """
    url = store_url(where)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StoreError(f"no store at {path} (fix: run 'postroom db upgrade')")
    try:
        with Session(open_store(url), expire_on_commit=False) as s, s.begin():
            yield s
    except IntegrityError:
        raise
    except DBAPIError as e:
        raise explain(e, url) from e


_DRIVER_SQL: dict[int, tuple[Any, str | None, tuple[str, ...], dict[str, Any]]] = {}
_DRIVER_SQL_MAX = 64
log = logging.getLogger("postroom.store")


def driver_rows(conn: Connection, statement: Any, values: dict[str, Any]) -> list[Any]:
    """The rows of ``statement`` with bind ``values``: on SQLite through the driver, as
    plain tuples, where SQLAlchemy's result rows cost more than the read (a page of 100
    rows); elsewhere by SQLAlchemy. For a SELECT built once, at import (its SQL is kept
    by the statement's identity), of columns whose values need no conversion (text,
    numbers; the caller makes booleans of 0 and 1). A statement whose binds SQLAlchemy
    would convert or expand is read by SQLAlchemy."""
    if conn.dialect.name != "sqlite":
        return list(conn.execute(statement, values).all())
    hit = _DRIVER_SQL.get(id(statement))
    if hit is None or hit[0] is not statement:
        if len(_DRIVER_SQL) >= _DRIVER_SQL_MAX:  # only for statements built once: a few
            _DRIVER_SQL.clear()
        hit = (statement, *_driver_sql(conn, statement))
        _DRIVER_SQL[id(statement)] = hit
    _, sql, names, defaults = hit
    if sql is not None:
        try:
            params = [values[n] if n in values else defaults[n] for n in names]
        except KeyError as e:
            raise StoreError(f"no value for the bind parameter {e} of {sql!r}") from None
        raw: Any = conn.connection.driver_connection
        try:
            return list(raw.execute(sql, params))
        except sqlite3.Error as e:  # SQLAlchemy's own read says what is wrong
            log.warning("store: a driver read failed (%s); read by SQLAlchemy: %s", e, sql)
    return list(conn.execute(statement, values).all())


def _driver_sql(conn: Connection, statement: Any) -> tuple[str | None, tuple[str, ...],
                                                             dict[str, Any]]:
    """(SQL, bind names in order, defaults) of ``statement`` for the driver, or (None,
    ...) when SQLAlchemy must run it: another driver, or binds it converts or expands."""
    compiled = statement.compile(dialect=conn.dialect)
    plain = conn.dialect.driver == "pysqlite" and not compiled.post_compile_params \
        and not compiled.literal_execute_params and all(
            b.type.bind_processor(conn.dialect) is None for b in compiled.binds.values())
    defaults = {k: v for k, v in compiled.params.items()
                if k in compiled.binds and not compiled.binds[k].required}
    return (str(compiled) if plain else None), tuple(compiled.positiontup or ()), defaults


def explain(error: DBAPIError, url: URL) -> StoreError:
    """A StoreError for a database error, with the fix when we know it."""
    text = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
    lowered = text.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return StoreError(f"{describe(url)}: the store has no tables yet ({text}) "
                          "(fix: run 'postroom db upgrade')")
    return StoreError(f"{describe(url)}: {text}")


# -- migrations -------------------------------------------------------------------------------

def alembic_config() -> Config:
    """Alembic's configuration, built in code: no alembic.ini on disk."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.set_main_option("path_separator", "os")
    return cfg


def head_revision() -> str:
    """The newest revision the migration scripts know."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migration scripts"
    return head


def _revision_of(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def current_revision(where: Site | str | URL) -> str | None:
    """The schema revision the database is at; None when it has never been upgraded."""
    url = store_url(where)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    engine = _new_engine(url)
    try:
        with engine.connect() as connection:
            return _revision_of(connection)
    except DBAPIError as e:
        raise explain(e, url) from e
    finally:
        engine.dispose()


def upgrade(where: Site | str | URL, revision: str = "head") -> tuple[str | None, str | None]:
    """Run the migrations up to ``revision``; return the revisions (before, after).

    SQLite runs them with foreign keys off (batch operations copy tables) and checks them
    afterwards.
    """
    from alembic import command

    url = store_url(where)
    path = sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise StoreError(f"cannot create the store {path}: no directory {path.parent}")
    engine = _new_engine(url, foreign_keys=False)
    try:
        with engine.begin() as connection:
            before = _revision_of(connection)
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
            after = _revision_of(connection)
        if path is not None:
            with engine.connect() as connection:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise StoreError(f"{path}: foreign keys broken after the upgrade: {broken[:5]}")
    except DBAPIError as e:
        raise explain(e, url) from e
    finally:
        engine.dispose()
    return before, after
