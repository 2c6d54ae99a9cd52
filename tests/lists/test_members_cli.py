"""``postroom members add|remove|list|import`` through the real command, on SQLite and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.lists import listing
from postroom.lists.model import DeliveryMode, Member
from postroom.site import Site
from tests.conftest import run
from tests.lists.conftest import LIST, write

EX_DATAERR = 65


def _members(site: Site) -> list[Member]:
    return listing.page_members(site, "staff", "inf.example.ac.uk", per_page=1000).members


def test_add_list_remove(list_site: Site, tmp_path: Path) -> None:
    f = write(tmp_path / "new.txt", "# new staff\nAnn Smith <Ann@X.org>\n\nbob@x.org\n")
    done = run("members", "add", "staff", "carol@x.org", "--file", f, site=list_site.home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{LIST}: 3 added, 0 already members\n"
    done = run("members", "add", LIST, "bob@x.org", "dan@x.org", "--moderated", "--digest",
               site=list_site.home)
    assert done.stdout == f"= bob@x.org (already a member)\n{LIST}: 1 added, 1 already members\n"
    assert _members(list_site) == [
        Member("ann@x.org", "Ann Smith"), Member("bob@x.org"), Member("carol@x.org"),
        Member("dan@x.org", mode=DeliveryMode.MIME_DIGEST, moderated=True)]

    listing = run("members", "list", "staff", site=list_site.home).stdout
    lines = [line.split() for line in listing.splitlines() if line.strip()]
    assert lines[0] == ["address", "name", "delivery", "mode", "moderated", "bounces"]
    assert lines[2] == ["ann@x.org", "Ann", "Smith", "on", "regular", "no", "0"]
    assert lines[5] == ["dan@x.org", "on", "mime_digest", "yes", "0"]
    assert "4 members, page 1 of 1" in listing
    page2 = run("members", "list", "staff", "--page", "2", "--per-page", "3",
                site=list_site.home).stdout
    assert "dan@x.org" in page2 and "ann@x.org" not in page2
    assert "4 members, page 2 of 2" in page2
    found = run("members", "list", "staff", "--search", "SMITH", site=list_site.home).stdout
    assert "ann@x.org" in found and "bob@x.org" not in found

    done = run("members", "remove", "staff", "bob@x.org", "Carol@x.org", "nobody@x.org",
               site=list_site.home)
    assert done.returncode == 0
    assert done.stdout == f"{LIST}: 2 removed\n"
    assert f"nobody@x.org is not a member of {LIST}" in done.stderr
    assert [m.address for m in _members(list_site)] == ["ann@x.org", "dan@x.org"]


def test_bad_addresses_add_nobody(list_site: Site, tmp_path: Path) -> None:
    f = write(tmp_path / "new.txt", "ok@x.org\nnot an address\nBob <bob@>\nx@y@z.org\n")
    done = run("members", "add", "staff", "--file", f, "fine@x.org", site=list_site.home)
    assert done.returncode == EX_DATAERR
    assert f"{f}:2: 'not an address':" in done.stderr
    assert f"{f}:3: 'Bob <bob@>':" in done.stderr
    assert f"{f}:4: 'x@y@z.org':" in done.stderr
    assert f"nobody added to {LIST}" in done.stderr
    assert _members(list_site) == []


def test_unknown_list(ready_site: Site) -> None:
    done = run("members", "add", "nosuch", "a@x.org", site=ready_site.home)
    assert done.returncode == 67
    assert "no mailing list nosuch@inf.example.ac.uk" in done.stderr


@pytest.mark.parametrize("listing", [
    # Mailman 2: list_members staff; list_members -f staff; --nomail
    "ann@x.org\nbob@x.org\n",
    "Ann Person <ann@x.org>\nbob@x.org\n",
    # Mailman 3: mailman members staff@...
    "Ann Person <ann@x.org>\nBob <bob@x.org>\n",
])
def test_import_mailman_listings(list_site: Site, tmp_path: Path, listing: str) -> None:
    f = write(tmp_path / "members.txt", listing + "Zed <zed@x.org> [BYBOUNCE]\n")
    done = run("members", "import", "staff", f, site=list_site.home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{LIST}: 3 imported (1 with delivery off), 0 already members\n"
    got = {m.address: m for m in _members(list_site)}
    assert set(got) == {"ann@x.org", "bob@x.org", "zed@x.org"}
    assert not got["zed@x.org"].delivery_enabled and got["zed@x.org"].display_name == "Zed"
    assert got["ann@x.org"].delivery_enabled
    # again: nothing new
    assert "0 imported, 3 already members" in run("members", "import", "staff", f,
                                                   site=list_site.home).stdout


def test_import_empty_mailman3_list_and_bad_lines(list_site: Site, tmp_path: Path) -> None:
    f = write(tmp_path / "empty.txt", "staff@lists.example.org has no members\n")
    assert run("members", "import", "staff", f, site=list_site.home).returncode == 0
    f = write(tmp_path / "bad.txt", "ann@x.org\n<>\n")
    done = run("members", "import", "staff", f, "--digest", site=list_site.home)
    assert done.returncode == EX_DATAERR
    assert f"{f}:2: '<>': no address" in done.stderr
    assert _members(list_site) == []
