"""Bench: the web interface under ``wrk`` (32 connections) on a site with 100,000 members
and 100,000 archived posts: the list index, a members page, an archive month page and an
archive search. Figures go to docs/performance.md (and bench/results/web.json); the goal
of issue 13 is p99 under 50 ms, and the list index at 1,000 requests/s or more. The deep
pages are reached as a reader reaches them, by the "next" link of the page before.

The data is written directly (members with ``postroom members add --file``, archive rows
in one transaction next to a real mbox), then the site is served by ``postroom serve``
with intake processes, so the web runs in its own process as in production.

    python -m bench.bench_web [--seconds 10] [--connections 32] [--members 100000]
                              [--keep | --site SITE]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import machine_info, quiet_gate, table, write_result

BIN = Path(sys.executable).parent
LIST = "big@inf.example.ac.uk"
WORDS = ("quantum", "seminar", "widget", "laser", "coffee", "thesis", "grant", "review")


def run(*args: str, site: Path, stdin: str | None = None) -> str:
    done = subprocess.run([str(BIN / "postroom"), *args, "--site", str(site)], input=stdin,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"postroom {' '.join(args)}: {done.stderr}")
    return done.stdout


def make_site(members: int, posts: int) -> Path:
    d = Path(tempfile.mkdtemp(prefix="bench-web-")) / "site"
    subprocess.run([str(BIN / "postroom"), "init", str(d), "--example"], check=True,
                   capture_output=True)
    text = (d / "postroom.toml").read_text()
    text = re.sub(r"^port = \d+$", "port = 0", text, flags=re.M)
    (d / "postroom.toml").write_text(text)
    run("lists", "create", LIST, "--owner", "owner@example.net", site=d)
    (d / "members.txt").write_text("".join(f"Member {i} <m{i:06d}@example.org>\n"
                                           for i in range(members)))
    run("members", "add", LIST, "--file", str(d / "members.txt"), site=d)
    run("web-admin", "add", "owner", "--email", "owner@example.net", "--password-stdin",
        site=d, stdin="correct horse battery staple\n")
    archive_posts(d, posts)
    return d


def archive_posts(d: Path, posts: int) -> None:
    """``posts`` posts over 10 months: an mbox per month and the index rows, in bulk."""
    from sqlalchemy import insert

    from postroom import site as site_mod
    from postroom.lists import store
    from postroom.store.models import ArchiveEntry

    s = site_mod.load(d)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    per_month = posts // 10
    rows: list[dict[str, Any]] = []
    for month in range(10):
        name = f"2026-{month + 1:02d}"
        path = d / "archives" / LIST / f"{name}.mbox"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for i in range(per_month):
                n = month * per_month + i
                when = start + timedelta(days=30 * month, seconds=i * 20)
                word = WORDS[n % len(WORDS)]
                parent = f"<p{n - 1}@example.org>" if i % 3 else None
                msg = (f"From m{n % 1000:06d}@example.org {when:%a %b %d %H:%M:%S %Y}\n"
                       f"From: Member {n % 1000} <m{n % 1000:06d}@example.org>\n"
                       f"To: {LIST}\nSubject: Post {n} about {word}\n"
                       f"Date: {when:%a, %d %b %Y %H:%M:%S +0000}\n"
                       f"Message-ID: <p{n}@example.org>\n"
                       + (f"In-Reply-To: {parent}\n" if parent else "") +
                       f"\nThis is post {n}, on the {word} of the week.\n\n").encode()
                offset = f.tell()
                f.write(msg)
                rows.append({"message_id": f"<p{n}@example.org>", "date": when,
                             "author": f"Member {n % 1000} <m{n % 1000:06d}@example.org>",
                             "subject": f"Post {n} about {word}",
                             "parent_message_id": parent, "mbox_month": name,
                             "offset": offset, "length": len(msg)})

    def work(conn: Any) -> None:
        list_id = store.list_id_of(conn, LIST.split("@")[0], LIST.split("@")[1])
        for r in rows:
            r["list_id"] = list_id
        for i in range(0, len(rows), 5000):
            conn.execute(insert(ArchiveEntry), rows[i:i + 5000])
        conn.commit()

    store.with_connection(s, work)
    from postroom.web.search import catch_up

    t0 = time.perf_counter()
    catch_up(s)
    print(f"search index of {len(rows)} posts made in {time.perf_counter() - t0:.1f} s")


def login(url: str) -> str:
    import requests

    s = requests.Session()
    page = s.get(url + "/admin/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert token
    s.post(url + "/admin/login", data={"login": "owner", "csrf_token": token.group(1),
                                       "password": "correct horse battery staple"},
           allow_redirects=False, timeout=30)
    return f"pr_session={s.cookies['pr_session']}; pr_browser={s.cookies['pr_browser']}"


def next_link(page_url: str, query: str, cookie: str) -> str:
    """The URL the "next" link (``rel="next"``) of ``page_url + query`` points to."""
    import html

    import requests

    text = requests.get(page_url + query, headers={"Cookie": cookie} if cookie else {},
                        timeout=60).text
    m = re.search(r'<a href="([^"]+)" rel="next">', text)
    assert m, f"no next link on {page_url}{query}"
    return page_url + html.unescape(m.group(1))


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, connections: int, cookie: str = "") -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if cookie:
        cmd += ["-H", f"Cookie: {cookie}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", text, flags=re.M)
        assert m, text
        result[f"p{pct}_ms"] = float(m.group(1)) * _UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--keep", action="store_true", help="keep the site directory")
    ap.add_argument("--site", type=Path, help="serve this site (made by an earlier --keep "
                    "run) instead of making one; it is kept")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk; make deps)")
    site = args.site or make_site(args.members, args.posts)
    if args.site:
        args.keep = True
    print(f"site: {site}")
    server = subprocess.Popen([str(BIN / "postroom"), "serve", "--site", str(site),
                               "--workers", "2"], stdout=subprocess.PIPE, text=True)
    try:
        url = ""
        assert server.stdout is not None
        for line in server.stdout:
            m = re.match(r"postroom: listening web \(web\) on (\S+):(\d+)", line)
            if m:
                url = f"http://{m.group(1)}:{m.group(2)}"
            if line.startswith("postroom: serving"):
                break
        import requests

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/healthz", timeout=5).ok:
                    break
            except requests.RequestException:  # listening (the master bound it), not up yet
                time.sleep(0.2)
        cookie = login(url)
        members = f"{url}/admin/lists/{LIST}/members"
        month = f"{url}/lists/{LIST}/archive/2026-05/"
        pages = {
            "list index": (f"{url}/lists/", ""),
            # page 500 of 1000 as a reader gets there: the "next" link of page 499
            "members page 500 of 1000": (next_link(members, "?page=499", cookie), cookie),
            "members search": (f"{members}?q=m09999", cookie),
            "archive month page 100": (next_link(month, "?page=99", ""), ""),
            "archive search": (f"{url}/lists/{LIST}/archive/search?q=quantum", ""),
        }
        results = {}
        for name, (target, c) in pages.items():
            assert requests.get(target, headers={"Cookie": c} if c else {},
                                timeout=30).status_code == 200, name
            quiet_gate()
            results[name] = wrk(target, args.seconds, args.connections, c)
        rows = [(n, f"{r['rps']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                 int(r["non_2xx"])) for n, r in results.items()]
        print(table(rows, ("page", "req/s", "p50 ms", "p99 ms", "non-2xx")))
        write_result("web", {"machine": machine_info(), "connections": args.connections,
                             "seconds": args.seconds, "members": args.members,
                             "posts": args.posts, "results": results})
    finally:
        server.terminate()
        server.wait(60)
        if not args.keep:
            shutil.rmtree(site.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
