"""The long fuzz run (``make fuzz``): every target of tests/fuzz for N inputs (10^6 by
default), then a report per target: inputs tried, crashes, unhandled exceptions, hangs,
property violations, and the known (reported, not yet fixed) findings.

Each target runs in batches: one pytest process per batch, with a fresh hypothesis seed,
``POSTROOM_FUZZ_EXAMPLES`` set to the batch size (the harness's long mode: findings are
counted and saved, not raised) and the tallies read back from ``POSTROOM_FUZZ_STATS``.
Batches keep hypothesis's memory bounded and let a dead or stuck test process count as a
crash or a hang instead of ending the run.

    python scripts/fuzz.py                         # all targets, 10^6 inputs each
    python scripts/fuzz.py --examples 20000 --targets maps,profile
    python scripts/fuzz.py --jobs 2                # two targets at a time

The failing inputs (the smallest seen per distinct finding) and their tracebacks go to
OUT/found/<target>/; a new one belongs in tests/fuzz/corpus/<target>/ (with a .xfail
sidecar until it is fixed). The report is OUT/report.json as well. Exit status 1 when
anything new was found, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUZZ = "tests/fuzz"

# target -> the hypothesis test that feeds it
TARGETS: dict[str, str] = {
    "addresses": f"{FUZZ}/test_fuzz_addresses.py::test_parse_returns_or_raises_address_error",
    "addresses_text": f"{FUZZ}/test_fuzz_addresses.py::test_parse_any_text",
    "maps": f"{FUZZ}/test_fuzz_maps.py::test_readers_return_entries_or_map_error",
    "maps_includes": f"{FUZZ}/test_fuzz_maps.py::test_include_chains_load_or_map_error",
    "profile": f"{FUZZ}/test_fuzz_profile.py::test_load_gives_site_or_config_error",
    "dsn": f"{FUZZ}/test_fuzz_dsn.py::test_dsn_of_any_message",
    "dsn_fields": f"{FUZZ}/test_fuzz_dsn.py::test_dsn_of_report_fields_from_the_wire",
    "smtp_inprocess": f"{FUZZ}/test_fuzz_smtp_inprocess.py::test_session_answers_every_stream",
    "smtp_server": f"{FUZZ}/test_fuzz_smtp_server.py::test_real_server_answers_every_stream",
}
COUNTS = ("crash", "unhandled", "hang", "violation")


@dataclass
class Result:
    target: str
    inputs: int = 0
    crash: int = 0
    unhandled: int = 0
    hang: int = 0
    violation: int = 0
    seconds: float = 0.0
    batches: int = 0
    known: dict[str, int] = field(default_factory=dict)
    found: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def findings(self) -> int:
        return self.crash + self.unhandled + self.hang + self.violation

    def add(self, stats: dict[str, Any]) -> None:
        self.inputs += stats["inputs"]
        for k in COUNTS:
            setattr(self, k, getattr(self, k) + stats[k])
        for reason, n in stats["known"].items():
            self.known[reason] = self.known.get(reason, 0) + n
        self.found.update({sig: path for sig, path in stats["found"].items() if path})


def run_target(target: str, examples: int, batch: int, out: Path, python: str,
               batch_timeout: float) -> Result:
    result = Result(target)
    found = out / "found"
    start = time.monotonic()
    while result.inputs < examples:
        size = min(batch, examples - result.inputs)
        stats_file = out / "stats" / f"{target}-{result.batches}.json"
        stats_file.parent.mkdir(parents=True, exist_ok=True)
        seed = random.randrange(2**32)
        env = {**os.environ, "POSTROOM_FUZZ_EXAMPLES": str(size),
               "POSTROOM_FUZZ_FOUND": str(found), "POSTROOM_FUZZ_STATS": str(stats_file)}
        argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                f"--hypothesis-seed={seed}", TARGETS[target]]
        result.batches += 1
        try:
            proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=batch_timeout)
        except subprocess.TimeoutExpired:
            result.hang += 1
            result.notes.append(f"batch {result.batches} (seed {seed}) still running after "
                                f"{batch_timeout:g} s: killed, counted as a hang")
            result.inputs += size  # do not retry the same budget forever
            continue
        if not stats_file.exists():
            result.crash += 1
            result.notes.append(f"batch {result.batches} (seed {seed}): pytest exited with "
                                f"{proc.returncode} and no stats:\n{proc.stdout[-2000:]}"
                                f"{proc.stderr[-2000:]}")
            result.inputs += size
            continue
        stats = json.loads(stats_file.read_text()).get(target)
        if stats is None or stats["inputs"] == 0:
            result.notes.append(f"batch {result.batches} (seed {seed}) tried nothing: "
                                f"{proc.stdout[-2000:]}")
            break
        result.add(stats)
        if proc.returncode not in (0, 1):
            result.notes.append(f"batch {result.batches} (seed {seed}): pytest exited with "
                                f"{proc.returncode}:\n{proc.stdout[-2000:]}")
        print(f"{target}: {result.inputs}/{examples} inputs, {result.findings} findings, "
              f"{sum(result.known.values())} known, {time.monotonic() - start:.0f} s",
              flush=True)
    result.seconds = time.monotonic() - start
    return result


def report(results: list[Result]) -> str:
    lines = [f"{'target':<16}{'inputs':>10}{'crashes':>9}{'unhandled':>11}{'hangs':>7}"
             f"{'violations':>12}{'known':>8}{'hours':>7}"]
    for r in results:
        lines.append(f"{r.target:<16}{r.inputs:>10}{r.crash:>9}{r.unhandled:>11}{r.hang:>7}"
                     f"{r.violation:>12}{sum(r.known.values()):>8}{r.seconds / 3600:>7.2f}")
    for r in results:
        for reason, n in sorted(r.known.items()):
            lines.append(f"  {r.target}: known x{n}: {reason}")
        for path in sorted(r.found.values()):
            lines.append(f"  {r.target}: NEW: {path} (traceback in {path}.txt)")
        for note in r.notes:
            lines.append(f"  {r.target}: {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=1_000_000, help="inputs per target")
    ap.add_argument("--batch", type=int, default=20_000, help="inputs per pytest process")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma-separated, of: {', '.join(TARGETS)}")
    ap.add_argument("--jobs", type=int, default=1, help="targets run at the same time")
    ap.add_argument("--out", type=Path, default=ROOT / "run" / "fuzz",
                    help="where found inputs, stats and report.json go")
    ap.add_argument("--batch-timeout", type=float, default=4 * 3600.0,
                    help="seconds before a batch counts as a hang")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown targets {unknown}; use {', '.join(TARGETS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_target, t, args.examples, args.batch, args.out,
                               sys.executable, args.batch_timeout) for t in targets]
        results = [f.result() for f in futures]
    text = report(results)
    print("\n" + text)
    (args.out / "report.json").write_text(json.dumps(
        [{**r.__dict__, "findings": r.findings} for r in results], indent=1))
    return 1 if any(r.findings for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
