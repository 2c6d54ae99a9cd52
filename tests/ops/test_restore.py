"""``postroom restore`` through the real command: a named generation comes back whole,
quiescent, migrated, with the checklist; a site home that is not empty is refused unless
--force; the export's profile keys."""

from __future__ import annotations

import json
from pathlib import Path

from postroom.ops import generations as gens
from tests.conftest import run

EX_CANTCREAT = 73


def ok(*args: str, site: Path | None = None) -> str:
    r = run(*args, site=site)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_restore_a_named_generation(example_site: Path, tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    with open(example_site / "maps" / "aliases", "a") as f:  # a file alias, by full path
        f.write(f"board-archive: {example_site}/mail/board.mbox\n")
    ok("members", "add", "services-unit@lists.inf.example.ac.uk", "ann@example.net",
       site=example_site)
    ok("backup", str(dest), site=example_site)
    first = gens.latest_name(dest)
    ok("members", "add", "services-unit@lists.inf.example.ac.uk", "bob@example.net",
       site=example_site)
    ok("backup", str(dest), site=example_site)
    new = tmp_path / "new"
    out = ok("restore", str(dest / str(first)), str(new))
    assert f"restored {first} " in out and "QUIESCENT" in out
    steps = [line for line in out.splitlines() if line.startswith("  ")]
    assert any("still name the old site home" in s for s in steps)  # the file alias
    assert any(s.strip().startswith(("2. postroom check", "1. postroom check")) for s in steps)
    assert any("DNS:" in s and "lists.inf.example.ac.uk" in s for s in steps)
    assert any("upstream relays" in s and "5 days" in s for s in steps)
    members = ok("members", "list", "services-unit@lists.inf.example.ac.uk", site=new)
    assert "ann@example.net" in members and "bob@example.net" not in members  # the older one
    assert "(head)" in ok("db", "current", site=new)
    assert "mode: QUIESCENT (restored from" in ok("status", site=new)
    record = json.loads((new / "state" / "restored.json").read_text())
    assert record["generation"] == first and record["old_site"] == str(example_site)
    assert (new / "maps" / "aliases").read_bytes() == \
        (example_site / "maps" / "aliases").read_bytes()
    assert ok("verify", "neilb", site=new).startswith("neilb@staffmail.example.ac.uk... ")


def test_a_site_home_that_is_not_empty_is_refused(example_site: Path, tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    ok("backup", str(dest), site=example_site)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("someone's notes")
    r = run("restore", str(dest), str(busy))
    assert r.returncode == EX_CANTCREAT
    assert "is not empty" in r.stderr and "--force" in r.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    ok("restore", str(dest), str(busy), "--force")
    assert (busy / "postroom.toml").exists() and (busy / "notes.txt").exists()
    r = run("restore", str(tmp_path), str(tmp_path / "x"))  # not a backup at all
    assert r.returncode == 65 and "postroom backup list" in r.stderr


def test_export_keys_in_the_profile(example_site: Path) -> None:
    assert run("export-addresses", site=example_site).returncode == 0
    (example_site / "maps" / "forwards").write_text("# half-loaded\n")
    assert run("export-addresses", site=example_site).returncode == 75
    with open(example_site / "postroom.toml", "a") as f:
        f.write("\n[export]\nevery = \"30m\"\nmax_shrink = 90\n")
    assert run("export-addresses", site=example_site).returncode == 0
