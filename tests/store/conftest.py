"""Fixtures for the store tests: sites on SQLite (tmp_path) and on a real PostgreSQL.

``pg_server`` starts one private PostgreSQL for the session (see tests/pgserver.py); each
test that wants it gets a fresh database. ``store_site`` is parametrised over both
backends, so every test using it runs on SQLite and on PostgreSQL (marked ``postgres``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from postroom import site as site_mod
from postroom.site import Site
from postroom.store.db import dispose_engines
from tests.pgserver import PostgresServer, PostgresUnavailable, start_postgres

PROFILE = """\
[site]
hostname = "mail.inf.example.ac.uk"
domains = ["inf.example.ac.uk"]
host_names = ["lists.inf.example.ac.uk", "mail.inf.example.ac.uk"]
hosted_domains = ["cogsci.example.ac.uk"]

[database]
url = "{url}"
"""


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        with start_postgres() as server:
            yield server
    except PostgresUnavailable as e:
        pytest.fail(f"cannot start PostgreSQL for the postgres tests: {e}", pytrace=False)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database (a schema of its own, see PostgresServer)."""
    return pg_server.create_schema()


@pytest.fixture(autouse=True)
def _close_engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with small parameters in-process, to keep the suite fast
    (test_real_argon2_parameters and the subprocess tests use the shipped ones)."""
    from argon2 import PasswordHasher

    from postroom.store import users

    monkeypatch.setattr(users, "_hasher",
                        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(users, "_dummy_hash", None)


MakeSite = Callable[..., Site]


@pytest.fixture
def make_site(tmp_path: Path) -> MakeSite:
    """``make_site(url="")``: a site home in tmp_path; empty url = SITE/postroom.db."""
    counter = iter(range(1000))

    def make(url: str = "") -> Site:
        home = tmp_path / f"site{next(counter)}"
        home.mkdir()
        (home / "postroom.toml").write_text(PROFILE.format(url=url))
        return site_mod.load(home)

    return make


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_site(backend: str, make_site: MakeSite, request: pytest.FixtureRequest) -> Site:
    """A site whose store is not made yet, on SQLite and on PostgreSQL."""
    if backend == "postgres":
        return make_site(request.getfixturevalue("pg_url"))
    return make_site()


@pytest.fixture
def ready_site(store_site: Site) -> Site:
    """``store_site`` upgraded to head."""
    from postroom.store.db import upgrade

    upgrade(store_site)
    return store_site
