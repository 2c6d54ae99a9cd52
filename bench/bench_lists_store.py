#!/usr/bin/env python3
"""List store benchmarks (the list engine issue): members in bulk, sync, paging.

Goals (docs/performance.md):

(a) adding 10,000 members (``postroom members add --file``'s work: parse the lines, one
    transaction of bulk inserts) in < 1 s;
(b) syncing 50,000 members in < 2 s: from an empty list, and a list of 50,000 to a source
    of 50,000 with 5,000 changed (2,500 out, 2,500 in), parse + diff + write;
(c) the first page (100) of a 100,000-member listing in < 50 ms (``page_members``, with the
    total count the listing prints), median of 20;

and for information: a page deep in the listing, a search, the whole fan-out iteration
(``members_for_delivery``, pages of 5,000) and one ``member`` lookup.

Runs on SQLite (a site home in a temp directory) and, when PostgreSQL's binaries are found,
on a private PostgreSQL started as tests/pgserver.py does. Results:
bench/results/lists_store.json. Run::

    .venv/bin/python bench/bench_lists_store.py [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from postroom.lists import listing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.pgserver

from postroom import site as site_mod  # noqa: E402
from postroom.lists import store as lstore  # noqa: E402
from postroom.lists.sync import parse_members, sync_members  # noqa: E402
from postroom.site import Site  # noqa: E402
from postroom.store.db import dispose_engines, upgrade  # noqa: E402
from postroom.store.lists import create_list  # noqa: E402

PROFILE = """\
[site]
hostname = "mail.inf.example.ac.uk"
domains = ["inf.example.ac.uk"]

[database]
url = "{url}"
"""
DOMAIN = "inf.example.ac.uk"
GOALS = {"add_10000": 1.0, "sync_50000_initial": 2.0, "sync_50000_churn": 2.0,
         "first_page_100000": 0.050}


def _site(home: Path, url: str) -> Site:
    home.mkdir(parents=True)
    (home / "postroom.toml").write_text(PROFILE.format(url=url))
    site = site_mod.load(home)
    upgrade(site)
    return site


def _lines(n: int, start: int = 0, names: bool = True) -> list[str]:
    return [f"Member {i} <m{i:07d}@example.org>" if names and i % 3 == 0 else
            f"m{i:07d}@example.org" for i in range(start, start + n)]


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(site: Site) -> dict[str, float]:
    out: dict[str, float] = {}
    create_list(site, "add", DOMAIN)
    create_list(site, "sync", DOMAIN)
    create_list(site, "big", DOMAIN)

    lines = _lines(10_000)

    def add() -> None:
        members, errors = parse_members(lines, "bench")
        assert not errors
        lstore.add_members(site, "add", DOMAIN, members)
    out["add_10000"] = _timed(add)

    initial = _lines(50_000)

    def sync_initial() -> None:
        members, _ = parse_members(initial, "bench")
        plan = sync_members(site, "sync", DOMAIN, members)
        assert plan.applied and len(plan.add) == 50_000
    out["sync_50000_initial"] = _timed(sync_initial)

    churn = _lines(47_500, 2_500) + _lines(2_500, 1_000_000)

    def sync_churn() -> None:
        members, _ = parse_members(churn, "bench")
        plan = sync_members(site, "sync", DOMAIN, members)
        assert plan.applied and len(plan.add) == 2_500 and len(plan.remove) == 2_500
    out["sync_50000_churn"] = _timed(sync_churn)

    big, _ = parse_members(_lines(100_000), "bench")
    out["setup_add_100000"] = _timed(lambda: lstore.add_members(site, "big", DOMAIN, big))

    def runs(fn: Callable[[], Any], n: int = 20) -> float:
        fn()  # the pool's first connection
        return statistics.median(_timed(fn) for _ in range(n))

    out["first_page_100000"] = runs(lambda: listing.page_members(site, "big", DOMAIN, 1, 100))
    out["page_500_of_1000"] = runs(lambda: listing.page_members(site, "big", DOMAIN, 500, 100))
    out["search_100000"] = runs(
        lambda: listing.page_members(site, "big", DOMAIN, 1, 100, "m00999"), 5)
    out["member_lookup"] = runs(
        lambda: lstore.member(site, f"big@{DOMAIN}", "m0054321@example.org"), 100)
    out["settings_for"] = runs(
        lambda: lstore.settings_for(site, f"big-bounces+x=y.org@{DOMAIN}"), 100)

    def fan_out() -> None:
        total = sum(len(p) for p in lstore.members_for_delivery(site, f"big@{DOMAIN}"))
        assert total == 100_000
    out["delivery_pages_100000"] = _timed(fan_out)
    dispose_engines()
    return out


@contextmanager
def _postgres() -> Iterator[str | None]:
    from tests.pgserver import PostgresUnavailable, start_postgres

    try:
        with start_postgres() as server:
            yield server.create_database()
    except PostgresUnavailable as e:
        print(f"postgresql: skipped ({e})")
        yield None


def _report(backend: str, figures: dict[str, float]) -> None:
    print(f"\n{backend}")
    for key, seconds in figures.items():
        goal = GOALS.get(key)
        verdict = "" if goal is None else ("  ok" if seconds < goal else
                                           f"  MISSED (goal {goal * 1000:.0f} ms)")
        print(f"  {key:24} {seconds * 1000:9.1f} ms{verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = bench(_site(Path(tmp) / "sqlite", ""))
        _report("sqlite", results["sqlite"])
        if not args.no_postgres:
            with _postgres() as url:
                if url is not None:
                    results["postgresql"] = bench(_site(Path(tmp) / "pg", url))
                    _report("postgresql", results["postgresql"])
    out = ROOT / "bench" / "results" / "lists_store.json"
    out.write_text(json.dumps({"goals_s": GOALS, "results_s": results}, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    missed = [f"{b}:{k}" for b, fig in results.items() for k, g in GOALS.items() if fig[k] >= g]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
