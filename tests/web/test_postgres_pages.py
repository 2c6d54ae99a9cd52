"""The pages on a PostgreSQL store. On SQLite a page's store reads run in the event loop;
on PostgreSQL they run in a thread (``deps.page_read``): this walks the pages that take
either way through a real ``serve`` whose store is the suite's PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from postroom import site as site_mod
from tests.store import conftest as store_fixtures
from tests.web.conftest import LIST, ThreadedSink, ok, prepare, start
from tests.web.test_archive import archived

pg_server = store_fixtures.pg_server
pg_url = store_fixtures.pg_url


@pytest.mark.postgres
def test_admin_and_archive_pages_on_postgresql(example_template: Path, tmp_path: Path,
                                               sink: ThreadedSink, pg_url: str) -> None:
    site = tmp_path / "site"
    shutil.copytree(example_template, site)
    prepare(site, sink.port, extra=f'\n[database]\nurl = "{pg_url}"\n')
    assert site_mod.load(site).database_url == pg_url
    ok("members", "add", LIST, *(f"zz{i:03d}@example.org" for i in range(150)), site=site)
    post = archived(site, "Quantum seminar", body="The quantum widget explained.")
    web = start(site, sink, workers=2)  # the web in processes of its own, as in production
    try:
        owner = web.login("olive")
        first = web.get(f"/admin/lists/{LIST}/members", owner)
        # 152 members in address order, 100 a page: ann, bob, zz000 ... zz097 first
        assert first.status_code == 200 and "ann@example.net" in first.text
        assert "zz097@example.org" in first.text and "zz098@example.org" not in first.text
        assert "after=zz097%40example.org" in first.text  # the next page's link
        second = web.get(f"/admin/lists/{LIST}/members?after=zz097%40example.org", owner)
        assert "zz098@example.org" in second.text and "zz149@example.org" in second.text
        assert "ann@example.net" not in second.text
        found = web.get(f"/admin/lists/{LIST}/members?q=zz14", owner)
        assert "zz149@example.org" in found.text and "zz000@example.org" not in found.text
        # the moderator may not see the members; nobody logged in is sent to log in
        assert web.get(f"/admin/lists/{LIST}/members", web.login("mo")).status_code == 403
        anonymous = web.http().get(web.url + f"/admin/lists/{LIST}/members", timeout=30,
                                   allow_redirects=False)
        assert anonymous.status_code == 303

        month = web.get(f"/lists/{LIST}/archive/2026-11/")
        assert month.status_code == 200 and f'href="../msg/{post}"' in month.text
        assert "Quantum seminar" in month.text
        hits = web.get(f"/lists/{LIST}/archive/search?q=widget")
        assert hits.status_code == 200 and f'href="msg/{post}"' in hits.text
        assert "1 post found" in hits.text
    finally:
        for s in web.sessions:
            s.close()
        web.server.stop()
