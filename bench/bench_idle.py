"""Bench: RSS of a ``postroom serve`` per idle SMTP connection. Opens ``--count``
connections from 127.0.0.3 (an internal client, exempt from the per-client limits), each
left idle after its greeting, and prints the server's RSS (master and intake processes)
before and after, less a warm-up of 50.

    python bench/bench_idle.py --workers 2 --count 10000

Needs a file descriptor hard limit above ``--count`` (the soft limit is raised to it)."""
from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.server import serving
from tests.smtp.test_connection_limits import open_idle, rss_kib, settled_rss_kib

BIN = Path(sys.executable).parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--count", type=int, default=10_000)
    args = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    root = Path(tempfile.mkdtemp())
    site = root / "site"
    try:
        subprocess.run([str(BIN / "postroom"), "init", str(site), "--example"], check=True,
                       capture_output=True)
        with open(site / "postroom.toml", "a") as f:  # no DNS is asked: a closed port
            f.write('\n[dns]\nnameservers = ["127.0.0.1:9"]\n')
        limits = f"recipients = 1000\nconnections = {args.count + 100}\n"
        with serving(site, trustme.CA(), replace=(("recipients = 1000\n", limits),),
                     workers=args.workers) as server:
            assert server.proc is not None
            warm, _ = open_idle(server.ports["mx"], 50)
            for s in warm:
                s.close()
            time.sleep(2)
            before = settled_rss_kib(server.proc.pid)  # after the list engine's import
            start = time.monotonic()
            kept, replies = open_idle(server.ports["mx"], args.count)
            took = time.monotonic() - start
            time.sleep(1)
            after = rss_kib(server.proc.pid)
            print(f"workers={args.workers}: replies {replies} in {took:.1f} s; RSS {before} "
                  f"-> {after} KiB, {(after - before) / max(1, len(kept)):.1f} KiB per idle "
                  "connection")
            for s in kept:
                s.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
