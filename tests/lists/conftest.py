"""The list tests use the store's fixtures: sites on SQLite and on a real PostgreSQL
(``store_site`` / ``ready_site`` run a test on both; the PostgreSQL runs are marked
``postgres``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.site import Site
from postroom.store.lists import create_list
from tests.store import conftest as store_fixtures

# the store's fixtures, shared (this conftest also serves the engine's tests in this package,
# which do not need them: only _close_engines is autouse, and it only closes pooled engines)
pg_server = store_fixtures.pg_server
pg_url = store_fixtures.pg_url
make_site = store_fixtures.make_site
backend = store_fixtures.backend
store_site = store_fixtures.store_site
ready_site = store_fixtures.ready_site
_close_engines = store_fixtures._close_engines

LIST = "staff@inf.example.ac.uk"


@pytest.fixture
def list_site(ready_site: Site) -> Site:
    """``ready_site`` with the list staff@inf.example.ac.uk (owner boss@inf.example.ac.uk)."""
    create_list(ready_site, "staff", "inf.example.ac.uk", owners=["boss@inf.example.ac.uk"])
    return ready_site


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
