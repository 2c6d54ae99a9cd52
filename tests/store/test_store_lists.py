"""Mailing lists in the store and StoreLists, the resolver's list source."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from postroom.routing.mapset import SiteMaps
from postroom.routing.resolve import ListSource, Resolver
from postroom.site import Site
from postroom.store import ListExists, StoreError, StoreValueError, UnknownList
from postroom.store.lists import (
    StoreLists,
    all_lists,
    create_list,
    delete_list,
    split_list_address,
)

LOCAL = ["inf.example.ac.uk", "lists.inf.example.ac.uk", "mail.inf.example.ac.uk"]

MakeSite = Callable[..., Site]


def _source() -> StoreLists:
    return StoreLists([("services-unit", "lists.inf.example.ac.uk"),
                       ("staff", "inf.example.ac.uk"),
                       ("staff", "research.example.org"),
                       ("Users", "LISTS.inf.example.ac.uk")], LOCAL)


@pytest.mark.parametrize(("local", "domain", "expected"), [
    ("services-unit", "lists.inf.example.ac.uk", "services-unit@lists.inf.example.ac.uk"),
    ("services-unit", "inf.example.ac.uk", "services-unit@lists.inf.example.ac.uk"),
    ("services-unit", "mail.inf.example.ac.uk", "services-unit@lists.inf.example.ac.uk"),
    ("SERVICES-Unit", "LISTS.inf.example.ac.uk.", "services-unit@lists.inf.example.ac.uk"),
    ("services-unit-request", "inf.example.ac.uk",
     "services-unit-request@lists.inf.example.ac.uk"),
    ("services-unit-owner", "lists.inf.example.ac.uk",
     "services-unit-owner@lists.inf.example.ac.uk"),
    ("services-unit-bounces", "inf.example.ac.uk",
     "services-unit-bounces@lists.inf.example.ac.uk"),
    ("services-unit-join", "inf.example.ac.uk", "services-unit-join@lists.inf.example.ac.uk"),
    ("services-unit-leave", "inf.example.ac.uk",
     "services-unit-leave@lists.inf.example.ac.uk"),
    ("services-unit-confirm", "inf.example.ac.uk",
     "services-unit-confirm@lists.inf.example.ac.uk"),
    ("users", "inf.example.ac.uk", "users@lists.inf.example.ac.uk"),
    # two lists called staff: the asked domain wins, else the local one
    ("staff", "research.example.org", "staff@research.example.org"),
    ("staff-owner", "research.example.org", "staff-owner@research.example.org"),
    ("staff", "lists.inf.example.ac.uk", "staff@inf.example.ac.uk"),
    # misses
    ("services-unit-admin", "inf.example.ac.uk", None),
    ("services", "inf.example.ac.uk", None),
    ("-request", "inf.example.ac.uk", None),
    ("nosuch", "inf.example.ac.uk", None),
    ("nosuch-request", "inf.example.ac.uk", None),
    ("services-unit", "elsewhere.example.com", None),
    ("services-unit", "research.example.org", None),
])
def test_lookup(local: str, domain: str, expected: str | None) -> None:
    assert _source().lookup(local, domain) == expected


def test_store_lists_is_a_list_source() -> None:
    source: ListSource = _source()
    assert source.lookup("staff", "inf.example.ac.uk") == "staff@inf.example.ac.uk"
    assert len(_source()) == 4


def test_create_list_all_delete(ready_site: Site) -> None:
    info = create_list(ready_site, "Services-Unit", "Lists.Inf.Example.AC.UK")
    assert info.address == "services-unit@lists.inf.example.ac.uk"
    create_list(ready_site, "staff", "inf.example.ac.uk")
    create_list(ready_site, "staff", "cogsci.example.ac.uk")  # a hosted domain is allowed
    assert [x.address for x in all_lists(ready_site)] == [
        "staff@cogsci.example.ac.uk", "staff@inf.example.ac.uk",
        "services-unit@lists.inf.example.ac.uk"]
    with pytest.raises(ListExists, match=re.escape("services-unit@lists.inf.example.ac.uk")):
        create_list(ready_site, "services-unit", "lists.inf.example.ac.uk")
    delete_list(ready_site, "staff", "cogsci.example.ac.uk")
    with pytest.raises(UnknownList):
        delete_list(ready_site, "staff", "cogsci.example.ac.uk")
    assert len(all_lists(ready_site)) == 2


def test_load_reads_the_store(ready_site: Site) -> None:
    create_list(ready_site, "services-unit", "lists.inf.example.ac.uk")
    source = StoreLists.load(ready_site)
    assert len(source) == 1
    assert source.lookup("services-unit-request", "inf.example.ac.uk") == \
        "services-unit-request@lists.inf.example.ac.uk"
    assert source.lookup("other", "inf.example.ac.uk") is None


def test_load_before_upgrade_is_empty(store_site: Site) -> None:
    """No database file, or a database without tables: no lists, no crash."""
    assert len(StoreLists.load(store_site)) == 0
    url = store_site.database_url
    if url.startswith("sqlite"):
        (store_site.home / "postroom.db").write_bytes(b"")
        assert len(StoreLists.load(store_site)) == 0


@pytest.mark.postgres
def test_load_from_unreachable_postgres_is_a_store_error(make_site: MakeSite) -> None:
    from tests.pgserver import free_port

    site = make_site(f"postgresql://x@127.0.0.1:{free_port()}/none?connect_timeout=2")
    with pytest.raises(StoreError):
        StoreLists.load(site)


@pytest.mark.parametrize(("name", "message"), [
    ("foo-request", "ends in -request"),
    ("foo-bounces", "ends in -bounces"),
    ("-foo", "list name"),
    ("foo bar", "list name"),
    ("a" * 65, "list name"),
])
def test_bad_list_names(ready_site: Site, name: str, message: str) -> None:
    with pytest.raises(StoreValueError, match=message):
        create_list(ready_site, name, "inf.example.ac.uk")


def test_list_domain_must_belong_to_the_site(ready_site: Site) -> None:
    with pytest.raises(StoreValueError, match="not a domain of this site"):
        create_list(ready_site, "foo", "example.com")
    with pytest.raises(StoreValueError, match="not a domain name"):
        create_list(ready_site, "foo", "bad_domain!")


def test_split_list_address() -> None:
    assert split_list_address("Staff@Inf.Example.AC.UK") == ("staff", "inf.example.ac.uk")
    assert split_list_address("staff", "inf.example.ac.uk") == ("staff", "inf.example.ac.uk")
    with pytest.raises(StoreValueError, match="NAME@DOMAIN"):
        split_list_address("staff")


def test_resolver_routes_lists_from_the_store(ready_site: Site, tmp_path: Path) -> None:
    create_list(ready_site, "services-unit", "lists.inf.example.ac.uk")
    resolver = Resolver(ready_site, SiteMaps.load(ready_site), StoreLists.load(ready_site))
    lines = [r.sendmail_line() for a in ("services-unit", "services-unit-owner@inf.example.ac.uk")
             for r in resolver.resolve(a).routes]
    assert lines == [
        "services-unit... deliverable: mailer list, user services-unit@lists.inf.example.ac.uk",
        "services-unit-owner@inf.example.ac.uk... deliverable: mailer list, "
        "user services-unit-owner@lists.inf.example.ac.uk",
    ]
