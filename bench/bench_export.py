"""Bench: export-addresses for a site with 100k aliases + 100k forwards (200k addresses).

Prints wall and CPU time (the machine is shared: CPU time is the steadier figure) for
loading the runtime, the export from a loaded runtime (``serve``'s periodic task), and the
whole ``postroom export-addresses`` process (``--runs`` times; the CPU time is the child's
user + system time).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="runs of each step (default 3)")
    args = ap.parse_args()
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

    print(f"load average {os.getloadavg()[0]:.1f}")
    for _ in range(args.runs):
        w0, c0 = time.perf_counter(), time.process_time()
        rt = build(d)
        w1, c1 = time.perf_counter(), time.process_time()
        result = export(rt)
        w2, c2 = time.perf_counter(), time.process_time()
        print(f"{len(result.addresses)} addresses: load {w1 - w0:.2f} s (CPU {c1 - c0:.2f}), "
              f"export {w2 - w1:.2f} s (CPU {c2 - c1:.2f}), total {w2 - w0:.2f} s "
              f"(CPU {c2 - c0:.2f})")
        del rt, result
    for _ in range(args.runs):  # each after a first export: the shrink guard reads it
        w3, c3 = time.perf_counter(), _child_cpu()
        done = subprocess.run([str(BIN / "postroom"), "export-addresses", "--site", str(d)],
                              capture_output=True, text=True)
        print(f"CLI (whole process): {time.perf_counter() - w3:.2f} s (CPU "
              f"{_child_cpu() - c3:.2f}): {done.stdout.strip()[:80]}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
