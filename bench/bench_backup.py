"""Bench: backup, verify and restore of a site with 100,000 archived messages and 100,000
list members (the issue's goal: the backup in under 30 s). The store is filled with plain
SQL (what 'members add' and the archiver write), the archive as monthly mbox files."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
POSTROOM = str(BIN / "postroom")
MEMBERS = ARCHIVED = 100_000
LIST = "bench@inf.example.ac.uk"


def timed(*args: str) -> float:
    t = time.perf_counter()
    done = subprocess.run([POSTROOM, *args], capture_output=True, text=True)
    took = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{args}: {done.stderr}")
    print(f"  postroom {' '.join(args)[:70]}: {took:.2f} s")
    return took


def main() -> None:
    root = Path(tempfile.mkdtemp())
    site = root / "site"
    subprocess.run([POSTROOM, "init", str(site), "--example"], check=True, capture_output=True)
    subprocess.run([POSTROOM, "lists", "create", LIST, "--site", str(site)], check=True,
                   capture_output=True)
    db = sqlite3.connect(site / "postroom.db")
    (list_id,) = db.execute("SELECT id FROM mailing_lists WHERE name = 'bench'").fetchone()
    db.executemany("INSERT INTO list_members (list_id, address, display_name, delivery_enabled,"
                   " mode, moderated, bounce_score, joined) VALUES (?, ?, '', 1, 'regular', 0,"
                   " 0, '2026-01-01')",
                   ((list_id, f"member{i:06d}@example.net") for i in range(MEMBERS)))
    db.executemany("INSERT INTO archive_index (list_id, message_id, date, author, subject, "
                   "mbox_month, offset, length) VALUES (?, ?, '2026-01-01', 'a@example.net', "
                   "?, ?, ?, 560)",
                   ((list_id, f"<{i % 12}.{i // 12}@example.net>", f"post {i}",
                     f"2026-{i % 12 + 1:02d}", 560 * (i // 12)) for i in range(ARCHIVED)))
    folder = site / "archives" / LIST
    folder.mkdir(parents=True)
    body = "x" * 500
    for month in range(12):
        with open(folder / f"2026-{month + 1:02d}.mbox", "w") as f:
            for i in range(ARCHIVED // 12 + 1):
                f.write(f"From a@example.net Mon Jan  1 00:00:00 2026\nMessage-ID: "
                        f"<{month}.{i}@example.net>\nSubject: post {i}\n\n{body}\n\n")
    db.commit()
    db.close()
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    print(f"site: {MEMBERS} members, {ARCHIVED} archived posts, {size / 1e6:.0f} MB")
    dest = root / "backup"
    first = timed("backup", str(dest), "--site", str(site))
    second = timed("backup", str(dest), "--site", str(site))
    verify = timed("backup", "verify", str(dest))
    restore = timed("restore", str(dest), str(root / "restored"))
    print(f"backup {first:.2f} s / {second:.2f} s, verify (both generations) {verify:.2f} s, "
          f"restore {restore:.2f} s")


if __name__ == "__main__":
    main()
