"""The fuzz report: per target, inputs tried and findings, at the end of the session (and
as JSON in ``POSTROOM_FUZZ_STATS`` for ``scripts/fuzz.py``)."""

from __future__ import annotations

import os

import pytest

from tests.fuzz.harness import STATS_VAR, TALLIES, long_mode, write_stats


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(STATS_VAR)
    if path:
        write_stats(path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (long_mode() or os.environ.get(STATS_VAR)) or not TALLIES:
        return
    tr = terminalreporter
    tr.section("fuzz report")
    tr.write_line(f"{'target':<22}{'inputs':>10}{'crash':>7}{'unhandled':>10}{'hang':>6}"
                  f"{'violation':>10}{'s/input':>9}")
    for t in TALLIES.values():
        per = t.seconds / t.inputs if t.inputs else 0.0
        tr.write_line(f"{t.target:<22}{t.inputs:>10}{t.crash:>7}{t.unhandled:>10}{t.hang:>6}"
                      f"{t.violation:>10}{per:>9.4f}")
        for reason, n in t.known.items():
            tr.write_line(f"    known ({n}): {reason}")
        for path in t.found.values():
            if path:
                tr.write_line(f"    saved: {path}")
