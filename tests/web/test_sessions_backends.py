"""The session check of every admin page (``accounts.session_admin``) on both store
backends: a live session is its admin's; an expired one, a disabled admin's and an ended
one are nobody's. (On SQLite it reads through the driver, which gives times as text.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from postroom.site import Site
from postroom.store.db import engine_for
from postroom.store.web_models import WebAdmin, WebSession
from postroom.web import accounts
from tests.store import conftest as store_fixtures

pg_server = store_fixtures.pg_server
pg_url = store_fixtures.pg_url
make_site = store_fixtures.make_site
backend = store_fixtures.backend
store_site = store_fixtures.store_site
ready_site = store_fixtures.ready_site
_close_engines = store_fixtures._close_engines


def test_a_session_is_its_admins_until_it_expires_or_ends(ready_site: Site) -> None:
    admin = accounts.create_admin(ready_site, "olive", "correct horse battery staple",
                                  email="olive@example.net", site_admin=True)
    token = accounts.new_session(ready_site, admin)
    assert accounts.session_admin(ready_site, token) == admin
    assert accounts.session_admin(ready_site, token + "x") is None
    assert accounts.session_admin(ready_site, "") is None

    def expires(when: datetime) -> None:
        with engine_for(ready_site).begin() as conn:
            conn.execute(update(WebSession).values(expires=when))

    expires(datetime.now(UTC) + timedelta(minutes=1))
    assert accounts.session_admin(ready_site, token) == admin
    expires(datetime.now(UTC) - timedelta(seconds=1))
    assert accounts.session_admin(ready_site, token) is None

    expires(datetime.now(UTC) + timedelta(hours=1))
    with engine_for(ready_site).begin() as conn:
        conn.execute(update(WebAdmin).values(disabled=True))
    assert accounts.session_admin(ready_site, token) is None
    with engine_for(ready_site).begin() as conn:
        conn.execute(update(WebAdmin).values(disabled=False))
    assert accounts.session_admin(ready_site, token) == admin
    accounts.end_session(ready_site, token)
    assert accounts.session_admin(ready_site, token) is None
