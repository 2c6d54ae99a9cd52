"""Engines, URLs and Alembic migrations, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from postroom.site import Site
from postroom.store import StoreError
from postroom.store import db as store_db
from postroom.store.models import Base
from postroom.store.web_models import WebAdmin

assert WebAdmin.__table__ is not None  # the web's tables are in Base.metadata too

HEAD = "0004"  # the newest migration (0004: kept counts and the archive search index)
TABLES = {"users", "user_addresses", "mailing_lists", "list_roles", "list_address_rules",
          "list_members", "held_messages", "pending_confirmations", "archive_index",
          "alembic_version"}
SETTINGS = {"description", "posting_policy", "subject_prefix", "footer", "max_message_size",
            "max_recipients", "archive_policy", "reply_to", "dmarc_mitigation",
            "subscription_needs_approval", "web_signup", "obfuscate_addresses",
            "digest_size_kb", "digest_period_days", "held_expiry_days", "acceptable_aliases"}

MakeSite = Callable[..., Site]


def test_upgrade_creates_the_tables_and_reaches_head(store_site: Site) -> None:
    assert store_db.current_revision(store_site) is None
    before, after = store_db.upgrade(store_site)
    assert before is None
    assert after == store_db.head_revision() == HEAD
    assert store_db.current_revision(store_site) == HEAD
    engine = store_db.engine_for(store_site)
    with engine.connect() as conn:
        insp = inspect(conn)
        assert set(insp.get_table_names()) >= TABLES
        assert {c["name"] for c in insp.get_columns("users")} == {
            "id", "login", "password_hash", "created", "disabled"}
        assert {c["name"] for c in insp.get_columns("user_addresses")} == {
            "id", "user_id", "address"}
        assert {c["name"] for c in insp.get_columns("mailing_lists")} == {
            "id", "name", "domain", "created", "secret"} | SETTINGS
        fks = insp.get_foreign_keys("user_addresses")
        assert fks[0]["referred_table"] == "users"
        assert fks[0]["options"].get("ondelete") == "CASCADE"
    # a second upgrade is a no-op
    assert store_db.upgrade(store_site) == (HEAD, HEAD)


def test_models_match_the_migrated_schema(ready_site: Site) -> None:
    with store_db.engine_for(ready_site).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_every_list_setting_has_a_column() -> None:
    from dataclasses import fields

    from postroom.lists.model import ListSettings

    columns = {c.name for c in Base.metadata.tables["mailing_lists"].columns}
    scalar = {f.name for f in fields(ListSettings)} - {"owners", "moderators", "address_rules"}
    assert scalar <= columns
    assert scalar - {"name", "domain"} == SETTINGS


def test_upgrade_from_0001_keeps_lists_and_gives_each_a_secret(store_site: Site) -> None:
    store_db.upgrade(store_site, "0001")
    engine = store_db.engine_for(store_site)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO mailing_lists (name, domain) VALUES "
                          "('a', 'inf.example.ac.uk'), ('b', 'inf.example.ac.uk')"))
    store_db.dispose_engines()
    assert store_db.upgrade(store_site) == ("0001", HEAD)
    with store_db.engine_for(store_site).connect() as conn:
        rows = conn.execute(text("SELECT name, secret, posting_policy, web_signup "
                                 "FROM mailing_lists ORDER BY name")).all()
    assert [r[0] for r in rows] == ["a", "b"]
    assert all(len(r[1]) == 64 for r in rows) and rows[0][1] != rows[1][1]
    assert {(r[2], bool(r[3])) for r in rows} == {("members", True)}


def test_downgrade_to_base_and_up_again(ready_site: Site) -> None:
    url = store_db.store_url(ready_site)
    engine = store_db.open_store(url)
    cfg = store_db.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    store_db.dispose_engines()
    assert store_db.current_revision(ready_site) is None
    assert store_db.upgrade(ready_site) == (None, HEAD)


def test_sqlite_store_is_the_site_file_in_wal_mode_with_foreign_keys(make_site: MakeSite
                                                                     ) -> None:
    site = make_site()
    url = store_db.store_url(site)
    assert url.database == str(site.home / "postroom.db")
    assert not store_db.exists(site)
    store_db.upgrade(site)
    assert (site.home / "postroom.db").is_file()
    with store_db.engine_for(site).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_relative_sqlite_url_is_relative_to_the_site_home(make_site: MakeSite) -> None:
    site = make_site("sqlite:///state/store.db")
    assert store_db.store_url(site).database == str(site.home / "state" / "store.db")
    with pytest.raises(StoreError, match="no directory"):
        store_db.upgrade(site)
    (site.home / "state").mkdir()
    assert store_db.upgrade(site)[1] == HEAD
    assert (site.home / "state" / "store.db").is_file()


def test_postgresql_url_uses_psycopg3() -> None:
    url = store_db.store_url("postgresql://mail:secret@db.example/postroom")
    assert url.drivername == "postgresql+psycopg"
    assert "secret" not in store_db.describe(url)


def test_a_bad_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="not valid"):
        store_db.store_url("not a url")


def test_engine_is_shared_per_url_and_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert store_db.open_store(url) is store_db.open_store(url)
    assert store_db.open_store(url) is not store_db.open_store(f"sqlite:///{tmp_path / 'b.db'}")


def test_session_before_upgrade_says_what_to_run(store_site: Site) -> None:
    if store_db.sqlite_path(store_db.store_url(store_site)) is not None:
        with pytest.raises(StoreError, match=r"no store at .*postroom db upgrade"), \
                store_db.session(store_site) as s:
            s.execute(text("SELECT 1"))
        return
    with pytest.raises(StoreError, match=r"no tables yet.*postroom db upgrade"), \
            store_db.session(store_site) as s:
        s.execute(text("SELECT id FROM users"))


@pytest.mark.postgres
def test_unreachable_postgres_is_a_store_error(make_site: MakeSite) -> None:
    from tests.pgserver import free_port

    site = make_site(f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2")
    with pytest.raises(StoreError, match=r"127\.0\.0\.1"):
        store_db.upgrade(site)
    with pytest.raises(StoreError):
        store_db.current_revision(site)


def test_missing_postgres_binaries_are_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import shutil

    from tests import pgserver

    monkeypatch.delenv("PG_BINDIR", raising=False)
    monkeypatch.setattr(pgserver, "_SEARCH", ())
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(pgserver.PostgresUnavailable, match="initdb, pg_ctl, postgres"):
        pgserver.find_bindir()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_engine(ready_site: Site) -> None:
    import os

    parent = store_db.engine_for(ready_site)
    with parent.connect() as conn:
        conn.execute(text("SELECT 1"))
    pid = os.fork()
    if pid == 0:  # child: a new engine that works; the parent's is forgotten
        ok = store_db.engine_for(ready_site) is not parent
        with store_db.engine_for(ready_site).connect() as conn:
            ok = ok and conn.execute(text("SELECT 1")).scalar() == 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with parent.connect() as conn:  # the parent's pooled connection still works
        assert conn.execute(text("SELECT 2")).scalar() == 2
