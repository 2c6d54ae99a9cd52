"""Migration 0004 (the counts behind the listing, PostgreSQL's archive search) on both
backends: the counts of a store that had members before it, and the way back to 0003."""

from __future__ import annotations

from postroom.lists import listing, store
from postroom.lists.model import Member
from postroom.site import Site
from postroom.store import db as store_db
from postroom.store.lists import create_list


def test_upgrade_counts_existing_members_and_downgrade_undoes_it(store_site: Site) -> None:
    store_db.upgrade(store_site, "0003")
    create_list(store_site, "staff", "inf.example.ac.uk", owners=["boss@example.net"])
    store.add_members(store_site, "staff", "inf.example.ac.uk",
                      [Member(f"m{i}@example.org") for i in range(7)])
    store_db.upgrade(store_site)
    page = listing.page_members(store_site, "staff", "inf.example.ac.uk")
    assert page.total == 7 and len(page.members) == 7
    store_db.dispose_engines()
    store_db.upgrade(store_site, "0004")
    from alembic import command

    with store_db.engine_for(store_site).begin() as conn:
        cfg = store_db.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    store.add_members(store_site, "staff", "inf.example.ac.uk", [Member("late@example.org")])
    store_db.upgrade(store_site)  # and up again: counted afresh
    assert listing.page_members(store_site, "staff", "inf.example.ac.uk").total == 8
