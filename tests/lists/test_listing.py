"""Members page by page (``postroom.lists.listing``), on SQLite and PostgreSQL: keyset
pages in address order, the counts the database keeps, and the trigram search index."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, update

from postroom.lists import listing, store
from postroom.lists.model import Member
from postroom.site import Site
from postroom.store.db import engine_for
from postroom.store.models import ArchiveEntry, ListMember
from postroom.store.web_models import ArchiveMonthCount

NAME, DOMAIN = "staff", "inf.example.ac.uk"


def _add(site: Site, n: int) -> list[str]:
    members = [Member(f"p{i:03}@example.com", f"Person {i:03}") for i in range(n)]
    store.add_members(site, NAME, DOMAIN, members)
    return [m.address for m in members]


def _walk(site: Site, **kw: object) -> list[list[str]]:
    """Every page, following the next links from the first."""
    pages = []
    after = ""
    while True:
        p = listing.page_members(site, NAME, DOMAIN, per_page=10, after=after, **kw)  # type: ignore[arg-type]
        pages.append([m.address for m in p.members])
        if not p.has_next:
            return pages
        after = p.next_after


def test_next_links_walk_every_member_once_in_order(list_site: Site) -> None:
    addresses = _add(list_site, 35)
    pages = _walk(list_site)
    assert [len(p) for p in pages] == [10, 10, 10, 5]
    assert [a for page in pages for a in page] == addresses
    third = listing.page_members(list_site, NAME, DOMAIN, per_page=10, after=pages[1][-1])
    assert third.has_previous and third.has_next and third.total == 35
    back = listing.page_members(list_site, NAME, DOMAIN, per_page=10,
                                before=third.previous_before)
    assert [m.address for m in back.members] == pages[1]
    assert back.has_next and back.has_previous
    first = listing.page_members(list_site, NAME, DOMAIN, per_page=10, before=pages[1][0])
    assert [m.address for m in first.members] == pages[0] and not first.has_previous
    old_link = listing.page_members(list_site, NAME, DOMAIN, page=4, per_page=10)
    assert [m.address for m in old_link.members] == pages[3] and old_link.pages == 4


def test_the_count_is_kept_through_adds_removes_and_list_deletion(list_site: Site) -> None:
    _add(list_site, 12)
    assert listing.page_members(list_site, NAME, DOMAIN).total == 12
    store.remove_members(list_site, NAME, DOMAIN, ["p000@example.com", "p001@example.com"])
    assert listing.page_members(list_site, NAME, DOMAIN).total == 10
    with engine_for(list_site).begin() as conn:
        list_id = store.list_id_of(conn, NAME, DOMAIN)
        before = listing.member_counts(conn, list_id)
        conn.execute(update(ListMember).where(ListMember.address == "p002@example.com")
                     .values(display_name="Renamed"))
        conn.execute(update(ListMember).values(bounce_score=1.0))  # not a change of names
        after = listing.member_counts(conn, list_id)
    assert after == (10, before[1] + 1)


def test_search_finds_a_member_by_part_of_the_address_or_name(list_site: Site) -> None:
    _add(list_site, 150)
    for indexed in (False, True):
        found = listing.page_members(list_site, NAME, DOMAIN, search="p014@exa",
                                     indexed=indexed)
        assert [m.address for m in found.members] == ["p014@example.com"], indexed
        found = listing.page_members(list_site, NAME, DOMAIN, search="PERSON 04",
                                     indexed=indexed)
        assert found.total == 10 and found.members[0].display_name == "Person 040"
        pages = _walk(list_site, search="example", indexed=indexed)
        assert len(pages) == 15 and pages[-1][-1] == "p149@example.com"
        back = listing.page_members(list_site, NAME, DOMAIN, per_page=10, search="example",
                                    before=pages[2][0], indexed=indexed)
        assert [m.address for m in back.members] == pages[1]
        assert back.has_next and back.has_previous
        first = listing.page_members(list_site, NAME, DOMAIN, per_page=10, search="example",
                                     before=pages[1][0], indexed=indexed)
        assert [m.address for m in first.members] == pages[0] and not first.has_previous
        assert listing.page_members(list_site, NAME, DOMAIN, search="p1",
                                    indexed=indexed).total == 50  # short: scanned


def test_the_search_index_follows_changes(list_site: Site) -> None:
    _add(list_site, 5)
    assert listing.page_members(list_site, NAME, DOMAIN, search="p003",
                                indexed=True).total == 1
    store.remove_members(list_site, NAME, DOMAIN, ["p003@example.com"])
    store.add_members(list_site, NAME, DOMAIN, [Member("new.p003@example.org")])
    found = listing.page_members(list_site, NAME, DOMAIN, search="p003", indexed=True)
    assert [m.address for m in found.members] == ["new.p003@example.org"]
    listing.index_path(list_site).unlink()  # derived data: made again
    found = listing.page_members(list_site, NAME, DOMAIN, search="p003", indexed=True)
    assert [m.address for m in found.members] == ["new.p003@example.org"]


def test_archive_month_counts_are_kept(list_site: Site) -> None:
    from datetime import UTC, datetime

    with engine_for(list_site).begin() as conn:
        list_id = store.list_id_of(conn, NAME, DOMAIN)
        conn.execute(insert(ArchiveEntry), [
            {"list_id": list_id, "date": datetime(2026, m, 1, tzinfo=UTC), "mbox_month":
             f"2026-{m:02d}", "offset": 0, "length": 1} for m in (1, 1, 2)])
        conn.execute(delete(ArchiveEntry).where(ArchiveEntry.mbox_month == "2026-02"))
        counts = dict(conn.execute(ArchiveMonthCount.__table__.select()
                                   .with_only_columns(ArchiveMonthCount.month,
                                                      ArchiveMonthCount.posts)).all())
    assert counts == {"2026-01": 2, "2026-02": 0}


def test_settings_changes_are_counted(list_site: Site) -> None:
    from sqlalchemy import select

    from postroom.store.web_models import ListCounter

    def counter() -> int:
        return int(store.with_connection(list_site, lambda c: c.scalar(
            select(ListCounter.settings).where(
                ListCounter.list_id == store.list_id_of(c, NAME, DOMAIN)))) or 0)

    before = counter()
    store.update_settings(list_site, NAME, DOMAIN, {"description": "Staff of the school"})
    assert counter() > before
    before = counter()
    _add(list_site, 3)  # members are not settings
    assert counter() == before


def test_a_quick_search_never_rebuilds_the_index_nor_scans(list_site: Site) -> None:
    """``quick=True`` (the web's searches in its event loop) answers from a current index
    and raises WouldWait where a rebuild or a scan would be needed, which the web then
    hands to a thread."""
    _add(list_site, 150)
    with pytest.raises(listing.WouldWait):  # never built
        listing.page_members(list_site, NAME, DOMAIN, search="p014", indexed=True, quick=True)
    slow = listing.page_members(list_site, NAME, DOMAIN, search="p014", indexed=True)
    quick = listing.page_members(list_site, NAME, DOMAIN, search="p014", indexed=True,
                                 quick=True)
    assert quick == slow and [m.address for m in quick.members] == ["p014@example.com"]
    with pytest.raises(listing.WouldWait):  # too short for the index: a scan
        listing.page_members(list_site, NAME, DOMAIN, search="p1", indexed=True, quick=True)
    assert listing.page_members(list_site, NAME, DOMAIN, indexed=True, quick=True).total \
        == 150  # no search: nothing to wait for
    store.add_members(list_site, NAME, DOMAIN, [Member("p014.new@example.org")])
    with pytest.raises(listing.WouldWait):  # the index is behind the list
        listing.page_members(list_site, NAME, DOMAIN, search="p014", indexed=True, quick=True)
    assert listing.page_members(list_site, NAME, DOMAIN, search="p014", indexed=True).total \
        == 2


def test_a_searchs_count_on_its_last_page(list_site: Site,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The last page of a search knows its count without counting; a page past the end
    still counts; and past COUNT_MAX every page says "more than COUNT_MAX", the last
    one too."""
    _add(list_site, 150)
    for page in (1, 2, 3):
        found = listing.page_members(list_site, NAME, DOMAIN, page=page, per_page=100,
                                     search="example", indexed=True)
        assert found.total == 150 and found.pages == 2, page
        assert len(found.members) == [100, 50, 0][page - 1]
        assert found.has_next == (page == 1)
    monkeypatch.setattr(listing, "COUNT_MAX", 120)
    for page in (1, 2):
        found = listing.page_members(list_site, NAME, DOMAIN, page=page, per_page=100,
                                     search="example", indexed=True)
        assert (found.total, found.capped) == (121, True), page


def test_a_quick_search_that_reads_too_long_is_handed_over(
        list_site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quick search is interrupted after QUICK_SECONDS (WouldWait); the same search
    without ``quick`` has no budget, and the index's connection is left as it was."""
    _add(list_site, 150)
    found = listing.page_members(list_site, NAME, DOMAIN, search="example", indexed=True)
    monkeypatch.setattr(listing, "QUICK_SECONDS", -1.0)  # every read is over its budget
    with pytest.raises(listing.WouldWait):
        listing.page_members(list_site, NAME, DOMAIN, search="example", indexed=True,
                             quick=True)
    assert listing.page_members(list_site, NAME, DOMAIN, search="example",
                                indexed=True) == found
    monkeypatch.setattr(listing, "QUICK_SECONDS", 60.0)
    assert listing.page_members(list_site, NAME, DOMAIN, search="example", indexed=True,
                                quick=True) == found


def test_driver_rows_are_sqlalchemys_rows(list_site: Site,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``store.db.driver_rows`` (SQLite's driver for the statements of every page) reads
    what SQLAlchemy reads, its bind defaults included (a LIMIT brings an OFFSET of 0); on
    SQLite it really reads through the driver (plain tuples, never the fallback), and a
    missing bind value is an error, not a NULL."""
    from postroom.store import StoreError, db
    from postroom.web import accounts, deps

    _add(list_site, 30)
    sqlite = engine_for(list_site).dialect.name == "sqlite"
    with engine_for(list_site).connect() as conn:
        list_id = store.list_id_of(conn, NAME, DOMAIN)
        named = {"name": NAME, "domain": DOMAIN}
        cases = [(listing._WHOLE_LIST.after, {"list_id": list_id, "limit": 5,
                                              "mark": "p010@example.com"}),
                 (listing._WHOLE_LIST.before, {"list_id": list_id, "limit": 5,
                                               "mark": "p020@example.com"}),
                 (listing._LIST_AND_COUNT, named), (listing._LIST_AND_CHANGES, named),
                 (deps._LIST, named), (accounts._SESSION, {"digest": "none"})]
        if sqlite:  # the fallback would hide a broken driver read
            monkeypatch.setattr(db.log, "warning", lambda *a: pytest.fail(str(a)))
        for statement, values in cases:
            expected = [tuple(r) for r in conn.execute(statement, values).all()]
            rows = db.driver_rows(conn, statement, values)
            assert [tuple(r) for r in rows] == expected, statement
            assert all(type(r) is tuple for r in rows) == sqlite or not rows
        assert len(db.driver_rows(conn, *cases[0])) == 5
        if sqlite:
            with pytest.raises(StoreError, match="mark"):
                db.driver_rows(conn, cases[0][0], {"list_id": list_id, "limit": 5})
