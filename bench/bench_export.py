"""Bench: export-addresses for a site with 100k aliases + 100k forwards (200k addresses)."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> None:
    d = Path(tempfile.mkdtemp()) / "site"
    subprocess.run([str(BIN / "postroom"), "init", str(d), "--example"], check=True,
                   capture_output=True)
    with open(d / "maps" / "aliases", "a") as f:
        f.writelines(f"alias{i:06d}: user{i % 1000:06d}, other{i}@remote.example.net\n"
                     for i in range(100_000))
    with open(d / "maps" / "forwards", "a") as f:
        f.writelines(f"user{i:06d}: user{i:06d}@staffmail.example.ac.uk\n"
                     for i in range(100_000))
    from postroom.ops.export import export
    from postroom.runtime import build

    t0 = time.perf_counter()
    rt = build(d)
    t1 = time.perf_counter()
    result = export(rt)
    t2 = time.perf_counter()
    print(f"{len(result.addresses)} addresses: load {t1 - t0:.2f} s, export {t2 - t1:.2f} s, "
          f"total {t2 - t0:.2f} s")
    t3 = time.perf_counter()
    done = subprocess.run([str(BIN / "postroom"), "export-addresses", "--site", str(d)],
                          capture_output=True, text=True)
    print(f"CLI (second run, whole process): {time.perf_counter() - t3:.2f} s: "
          f"{done.stdout.strip()[:80]}")


if __name__ == "__main__":
    main()
