"""The web's store reads on both store backends, called as the pages call them: the
archive search (SQLite: the FTS5 file; PostgreSQL: the ``archive_search`` table and its
GIN index) and the session check of every admin page."""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from postroom.lists import archive, store
from postroom.site import Site
from postroom.store.lists import create_list
from postroom.web import search
from tests.store import conftest as store_fixtures

pg_server = store_fixtures.pg_server
pg_url = store_fixtures.pg_url
make_site = store_fixtures.make_site
backend = store_fixtures.backend
store_site = store_fixtures.store_site
ready_site = store_fixtures.ready_site
_close_engines = store_fixtures._close_engines


def _post(site: Site, name: str, subject: str, body: str, day: int) -> int:
    settings = store.get_settings(site, name, "inf.example.ac.uk")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Ann <ann.lee@example.net>"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{name}{day}@example.net>"
    msg.set_content(body)
    entry = archive.archive(site, settings, msg, msg.as_bytes(), "ann.lee@example.net",
                            now=datetime(2026, 11, day, tzinfo=UTC))
    assert entry is not None
    return entry


def test_search_finds_words_newest_first_with_marked_snippets(ready_site: Site) -> None:
    for name in ("physics", "chem"):
        create_list(ready_site, name, "inf.example.ac.uk", owners=["boss@example.net"])
    first = _post(ready_site, "physics", "Spectroscopy seminar", "The quantum widget.", 1)
    second = _post(ready_site, "physics", "Re: seminar", "More on quantum widgets.", 2)
    _post(ready_site, "physics", "Unrelated", "Nothing to see.", 3)
    _post(ready_site, "chem", "quantum in chem", "quantum", 4)
    physics = store.with_connection(
        ready_site, lambda c: store.list_id_of(c, "physics", "inf.example.ac.uk"))

    hits, total = search.search(ready_site, physics, "quantum")
    assert total == 2 and [h.id for h in hits] == [second, first]
    assert "\x02quantum\x03" in hits[1].snippet
    assert [h.id for h in search.search(ready_site, physics, "spectro*")[0]] == [first]
    assert search.search(ready_site, physics, "seminar widget")[1] == 1
    assert search.search(ready_site, physics, "seminar widget*")[1] == 2
    # the author's address is words too, and query syntax of either engine is text
    assert search.search(ready_site, physics, "ann.lee@example.net")[1] == 3
    for q in ['"', "NEAR(", "a OR", "-x", "subject:foo", "*", "a & !b", "'", "\\"]:
        search.search(ready_site, physics, q)
    later = _post(ready_site, "physics", "quantum again", "q", 5)
    search.catch_up(ready_site)  # a search catches up at most every 2 s
    hits, total = search.search(ready_site, physics, "quantum")
    assert total == 3 and hits[0].id == later


def test_a_kept_count_follows_posts_indexed_by_another_connection(ready_site: Site) -> None:
    """The SQLite search keeps a query's count while the index file is unchanged; a post
    indexed by another connection (another thread here, another process in a server)
    must show in the next count at once."""
    import threading

    create_list(ready_site, "physics", "inf.example.ac.uk", owners=["boss@example.net"])
    _post(ready_site, "physics", "quantum one", "text", 1)
    physics = store.with_connection(
        ready_site, lambda c: store.list_id_of(c, "physics", "inf.example.ac.uk"))
    assert search.search(ready_site, physics, "quantum")[1] == 1
    assert search.search(ready_site, physics, "quantum")[1] == 1  # the kept count

    _post(ready_site, "physics", "quantum two", "text", 2)
    other = threading.Thread(target=search.catch_up, args=(ready_site,))
    other.start()
    other.join()
    # this thread's search does not catch up itself (the other one just did), so the
    # count can only be right if the kept one was dropped
    hits, total = search.search(ready_site, physics, "quantum")
    assert total == 2 and len(hits) == 2


def test_a_claimed_catch_up_is_left_to_its_claimer(ready_site: Site) -> None:
    """The search page claims a due catch-up (and runs it in a thread) and then searches
    with ``fresh=False`` in the loop: that search reads the index as it is, and a post
    gone from the store meanwhile is no hit."""
    from sqlalchemy import delete

    from postroom.store.db import engine_for
    from postroom.store.models import ArchiveEntry

    create_list(ready_site, "physics", "inf.example.ac.uk", owners=["boss@example.net"])
    first = _post(ready_site, "physics", "quantum one", "text", 1)
    physics = store.with_connection(
        ready_site, lambda c: store.list_id_of(c, "physics", "inf.example.ac.uk"))
    assert search.claim_catch_up(ready_site)
    assert not search.claim_catch_up(ready_site)  # claimed: the next one is not due
    search.catch_up(ready_site)
    assert [h.id for h in search.search(ready_site, physics, "quantum", fresh=False)[0]] \
        == [first]

    second = _post(ready_site, "physics", "quantum two", "text", 2)
    assert [h.id for h in search.search(ready_site, physics, "quantum", fresh=False)[0]] \
        == [first]  # not caught up
    search.catch_up(ready_site)
    hits, _ = search.search(ready_site, physics, "quantum", fresh=False)
    assert [h.id for h in hits] == [second, first]
    assert hits[0].subject == "quantum two" and hits[0].date.day == 2
    assert hits[0].author == "Ann <ann.lee@example.net>"

    with engine_for(ready_site).begin() as conn:
        conn.execute(delete(ArchiveEntry).where(ArchiveEntry.id == first))
    assert [h.id for h in search.search(ready_site, physics, "quantum")[0]] == [second]


def test_a_quick_search_that_reads_too_long_is_handed_over(ready_site: Site,
                                                           monkeypatch: Any) -> None:
    """On SQLite a quick search (the page's, in the event loop) is interrupted after
    ``listing.QUICK_SECONDS`` with WouldWait, and the page hands it to a thread; the
    same search there finds the posts."""
    import pytest

    from postroom.lists import listing
    from postroom.store.db import store_url

    create_list(ready_site, "physics", "inf.example.ac.uk", owners=["boss@example.net"])
    first = _post(ready_site, "physics", "quantum one", "text", 1)
    physics = store.with_connection(
        ready_site, lambda c: store.list_id_of(c, "physics", "inf.example.ac.uk"))
    assert [h.id for h in search.search(ready_site, physics, "quantum", quick=True)[0]] \
        == [first]
    monkeypatch.setattr(listing, "QUICK_SECONDS", -1.0)
    monkeypatch.setattr(listing, "QUICK_STEPS", 1)  # an index of one post is read quickly
    if store_url(ready_site).get_backend_name() == "sqlite":
        with pytest.raises(listing.WouldWait):
            search.search(ready_site, physics, "quantum one", quick=True)
    assert [h.id for h in search.search(ready_site, physics, "quantum one")[0]] == [first]


def test_a_session_is_its_admins_until_it_expires_or_ends(ready_site: Site) -> None:
    """A live session is its admin's; an expired one, a disabled admin's and an ended
    one are nobody's. (On SQLite the check reads through the driver, which gives times
    as text.)"""
    from datetime import timedelta

    from sqlalchemy import update

    from postroom.store.db import engine_for
    from postroom.store.web_models import WebAdmin, WebSession
    from postroom.web import accounts

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
