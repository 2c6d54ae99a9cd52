"""A server process of a site with lists imports the list engine soon after it starts
(``serve.services.LazyLists.warm``), so the first post it takes does not wait for the
import; a site without lists never imports it. Each case runs in a fresh interpreter:
this one has imported the engine long ago."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from postroom.site import load
from postroom.store.db import upgrade
from postroom.store.lists import create_list

PROFILE = """\
[site]
hostname = "mail.inf.example.ac.uk"
domains = ["inf.example.ac.uk"]
"""

PROBE = """\
import asyncio, sys
from postroom.runtime import Reloader
from postroom.serve.services import LazyLists
lists = LazyLists(Reloader(sys.argv[1]))
assert "postroom.lists.engine" not in sys.modules
asyncio.run(lists.warm(0.0))
print("postroom.lists.engine" in sys.modules, "postroom.lists.fanout" in sys.modules)
"""


def probe(home: Path) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, str(home)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def site_home(tmp_path: Path, *, with_list: bool) -> Path:
    home = tmp_path / "site"
    home.mkdir()
    (home / "postroom.toml").write_text(PROFILE)
    site = load(home)
    upgrade(site)
    if with_list:
        create_list(site, "staff", "inf.example.ac.uk", owners=["boss@inf.example.ac.uk"])
    return home


def test_a_site_with_a_list_gets_the_engine_imported_ahead(tmp_path: Path) -> None:
    assert probe(site_home(tmp_path, with_list=True)) == "True True"


def test_a_site_without_lists_never_imports_it(tmp_path: Path) -> None:
    assert probe(site_home(tmp_path, with_list=False)) == "False False"
