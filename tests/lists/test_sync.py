"""``postroom members sync``: the diff, --dry-run, the guards (bad lines, empty or much
smaller result, failing command), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.lists import listing
from postroom.lists import store as lstore
from postroom.lists.model import Member
from postroom.lists.sync import parse_members, plan_sync
from postroom.site import Site
from tests.conftest import run
from tests.lists.conftest import LIST, write

EX_DATAERR = 65
EX_UNAVAILABLE = 69


def _addresses(site: Site) -> list[str]:
    page = listing.page_members(site, "staff", "inf.example.ac.uk", per_page=1000)
    return [m.address for m in page.members]


def _seed(site: Site, *addresses: str) -> None:
    lstore.add_members(site, "staff", "inf.example.ac.uk", [Member(a) for a in addresses])


def test_plan_sync_is_a_set_difference() -> None:
    have = {"a@x.org": "", "b@x.org": "Bee", "c@x.org": ""}
    plan = plan_sync(have, [Member("b@x.org", "Bea"), Member("c@x.org"), Member("d@x.org")])
    assert [m.address for m in plan.add] == ["d@x.org"]
    assert plan.remove == ["a@x.org"]
    assert [(m.address, m.display_name) for m in plan.rename] == [("b@x.org", "Bea")]
    assert (plan.before, plan.after, plan.refused) == (3, 3, "")
    assert plan_sync(have, []).refused == "the source has no addresses"
    assert "shrink from 3 to 1" in plan_sync(have, [Member("a@x.org")]).refused
    assert plan_sync(have, [Member("a@x.org")], max_shrink=70).refused == ""
    assert plan_sync({}, [Member("a@x.org")]).refused == ""


def test_parse_members_lines() -> None:
    members, errors = parse_members([
        "# header", "", "  Ann@X.org  ", '"Smith, Bob" <bob@x.org>  # the boss',
        "Carol <carol@x.org>", "ann@x.org", "two@x.org three@x.org", "Dan <dan@x.org"], "f")
    assert [(m.address, m.display_name) for m in members] == [
        ("ann@x.org", ""), ("bob@x.org", "Smith, Bob"), ("carol@x.org", "Carol")]
    assert [e.split(":")[1] for e in errors] == ["7", "8"]


def test_sync_prints_the_diff_and_applies_it(list_site: Site, tmp_path: Path) -> None:
    _seed(list_site, "a@x.org", "b@x.org", "c@x.org")
    f = write(tmp_path / "members", "# from the database\nb@x.org\nCee <C@x.org>\nd@x.org\n")
    done = run("members", "sync", "staff", f, "--dry-run", site=list_site.home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "+ d@x.org\n- a@x.org\n~ c@x.org (Cee)\n"
        f"{LIST}: would be 1 added, 1 removed, 1 renamed; 3 -> 3 members "
        "(dry run: nothing changed)\n")
    assert _addresses(list_site) == ["a@x.org", "b@x.org", "c@x.org"]
    done = run("members", "sync", "staff", f, site=list_site.home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"{LIST}: 1 added, 1 removed, 1 renamed; 3 -> 3 members\n")
    assert _addresses(list_site) == ["b@x.org", "c@x.org", "d@x.org"]
    assert lstore.member(list_site, LIST, "c@x.org") == Member("c@x.org", "Cee")
    again = run("members", "sync", "staff", f, site=list_site.home)
    assert again.stdout == f"{LIST}: 0 added, 0 removed, 0 renamed; 3 -> 3 members\n"


def test_shrink_guard_and_empty_source_remove_nobody(list_site: Site, tmp_path: Path) -> None:
    _seed(list_site, *(f"m{i}@x.org" for i in range(10)))
    f = write(tmp_path / "few", "m1@x.org\nm2@x.org\nm3@x.org\nnew@x.org\n")
    done = run("members", "sync", "staff", f, site=list_site.home)
    assert done.returncode == EX_DATAERR
    assert "- m0@x.org" in done.stdout and "+ new@x.org" in done.stdout
    assert "would be 1 added, 7 removed" in done.stdout
    assert ("not synced, nobody added or removed: the list would shrink from 10 to 4 members "
            "(-60 %, more than the 50 % allowed") in done.stderr
    assert len(_addresses(list_site)) == 10 and "new@x.org" not in _addresses(list_site)
    # a bigger limit lets it through
    done = run("members", "sync", "staff", f, "--max-shrink", "60", site=list_site.home)
    assert done.returncode == 0, done.stderr
    assert _addresses(list_site) == ["m1@x.org", "m2@x.org", "m3@x.org", "new@x.org"]
    # an empty source (comments only) is refused whatever the limit
    empty = write(tmp_path / "empty", "# nothing today\n\n")
    done = run("members", "sync", "staff", empty, "--max-shrink", "100", site=list_site.home)
    assert done.returncode == EX_DATAERR
    assert "the source has no addresses" in done.stderr
    assert len(_addresses(list_site)) == 4


def test_invalid_lines_change_nothing(list_site: Site, tmp_path: Path) -> None:
    _seed(list_site, "a@x.org", "b@x.org")
    f = write(tmp_path / "members", "a@x.org\nb@x.org\nnew@x.org\nbroken line\n<x@>\n")
    done = run("members", "sync", "staff", f, site=list_site.home)
    assert done.returncode == EX_DATAERR
    assert f"{f}:4: 'broken line':" in done.stderr
    assert f"{f}:5: '<x@>':" in done.stderr
    assert "nobody added or removed" in done.stderr
    assert _addresses(list_site) == ["a@x.org", "b@x.org"]


def test_command_source(list_site: Site, tmp_path: Path) -> None:
    _seed(list_site, "a@x.org", "b@x.org")
    f = write(tmp_path / "members", "a@x.org\nb@x.org\nc@x.org\n")
    done = run("members", "sync", "staff", "--command", f"cat {f}", site=list_site.home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("+ c@x.org\n")
    assert _addresses(list_site) == ["a@x.org", "b@x.org", "c@x.org"]
    # a failing command: half its output must not remove anyone
    done = run("members", "sync", "staff", "--command",
               "echo a@x.org; echo 'ssh: connection refused' >&2; exit 255",
               site=list_site.home)
    assert done.returncode == EX_UNAVAILABLE
    assert "exited with status 255: ssh: connection refused; nobody was removed" in done.stderr
    assert _addresses(list_site) == ["a@x.org", "b@x.org", "c@x.org"]


@pytest.mark.parametrize("args", [[], ["FILE", "--command", "true"]])
def test_file_or_command(list_site: Site, args: list[str]) -> None:
    done = run("members", "sync", "staff", *args, site=list_site.home)
    assert done.returncode == 2
    assert "give FILE or --command CMD" in done.stderr
