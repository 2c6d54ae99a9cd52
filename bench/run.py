#!/usr/bin/env python3
"""``make bench``: run the benchmarks with their default settings, one after the other.

Each writes bench/results/NAME.json; docs/performance.md explains the method. The Postfix
reference needs root (it starts a private Postfix instance) and is skipped otherwise.
Add a new benchmark script to BENCHMARKS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (script and its arguments, needs root)
BENCHMARKS: list[tuple[list[str], bool]] = [
    (["bench_routing.py"], False),
    # postroom against Postfix in the same run, at the disk's own fsync cost and at +1 ms;
    # prints the ratio table of docs/performance.md (about 25 min)
    (["bench_intake.py", "--runs", "3", "--fsync-delay-ms", "0", "1"], True),
    (["bench_postfix.py"], True),
    (["bench_lists.py"], False),  # with Mailman 3 from PyPI in /tmp/mm3-venv: about 15 min
]


def main() -> int:
    failed = []
    for (script, *args), needs_root in BENCHMARKS:
        if needs_root and os.geteuid() != 0:
            print(f"== {script}: skipped (needs root)", flush=True)
            continue
        print(f"== {script} {' '.join(args)}", flush=True)
        rc = subprocess.run([sys.executable, str(HERE / script), *args],
                            timeout=7200).returncode
        if rc != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
