"""What every fuzz target shares: its budget, how one input's outcome is judged and
counted, and the corpus of inputs that once failed.

Two modes, chosen by the environment:

- short (default, ``make test``): each target tries its short budget of inputs; the first
  finding fails the test, and hypothesis shrinks it to a minimal input.
- long (``POSTROOM_FUZZ_EXAMPLES=N``, ``make fuzz``): each target tries N inputs. A finding
  is counted and its input saved under ``POSTROOM_FUZZ_FOUND`` (the smallest input per
  distinct finding), and the run goes on; the tallies are written to
  ``POSTROOM_FUZZ_STATS`` (JSON) and printed at the end of the session.

A finding is one of ``KINDS``:

    crash       the process under test died or stopped answering (server targets)
    unhandled   an exception other than the ones the contract allows (or, for a server,
                a traceback in its output or an aiosmtpd "500 Error: (Type) ..." reply)
    hang        no answer in time (a read timeout expired, or an input took longer than
                ``Target.hang_after`` seconds)
    violation   an answer that breaks the property (a malformed reply, a MapError with a
                line out of range, a DSN that is not multipart/report, ...)

The corpus: ``corpus/<target>/<name>`` holds one input as raw bytes; a sidecar
``<name>.xfail`` holds the reason when the input still fails (a known bug, not yet fixed):
its regression test is marked ``xfail(strict=True)``, so the suite stays green until the
fix lands and then says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import pytest
from _pytest.mark.structures import ParameterSet
from hypothesis import HealthCheck, Phase, example, settings

EXAMPLES_VAR = "POSTROOM_FUZZ_EXAMPLES"  # long mode: inputs per target
FOUND_VAR = "POSTROOM_FUZZ_FOUND"        # long mode: where failing inputs are saved
STATS_VAR = "POSTROOM_FUZZ_STATS"        # where the tallies go (JSON) at session end

CORPUS = Path(__file__).resolve().parent / "corpus"
KINDS = ("crash", "unhandled", "hang", "violation")

F = TypeVar("F", bound=Callable[..., Any])


def long_mode() -> bool:
    return bool(os.environ.get(EXAMPLES_VAR))


def budget(short: int) -> int:
    """Inputs to try: ``short`` in a normal run, ``POSTROOM_FUZZ_EXAMPLES`` in a long one."""
    value = os.environ.get(EXAMPLES_VAR)
    return int(value) if value else short


def fuzz_settings(short: int) -> settings:
    """Hypothesis settings for a target whose short budget is ``short`` inputs. No
    deadline (the harness times inputs itself); in the long mode no shrinking and no
    example database (findings are counted and saved, not raised)."""
    common: dict[str, Any] = {
        "max_examples": budget(short),
        "deadline": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                  HealthCheck.filter_too_much,
                                  HealthCheck.function_scoped_fixture],
    }
    if long_mode():
        return settings(database=None, phases=[Phase.explicit, Phase.generate], **common)
    return settings(**common)


# -- findings ------------------------------------------------------------------------------

class Finding(Exception):
    """Raised by a target's check; ``kind`` is one of KINDS."""

    kind = "violation"


class Crash(Finding):
    kind = "crash"


class Unhandled(Finding):
    kind = "unhandled"


class Hang(Finding):
    kind = "hang"


class Violation(Finding, AssertionError):
    kind = "violation"


def require(condition: object, message: str) -> None:
    """The property holds, else a Violation saying how it broke."""
    if not condition:
        raise Violation(message)


@dataclass(frozen=True)
class Known:
    """A finding already reported and not yet fixed: counted, never raised. ``pattern``
    is searched in ``"<kind> <ExceptionType>: <message>"``; its corpus input runs as an
    xfail(strict=True) regression test, which fails once the fix lands: then delete both."""

    pattern: str
    reason: str
    where: str = ""  # if given: the innermost postroom frame is in this file (e.g. "dsn.py")

    def matches(self, kind: str, error: BaseException) -> bool:
        if re.search(self.pattern, f"{kind} {type(error).__name__}: {error}", re.S) is None:
            return False
        if not self.where:
            return True
        ours = [f for f in traceback.extract_tb(error.__traceback__)
                if "/src/postroom/" in f.filename]
        return bool(ours) and ours[-1].filename.endswith("/" + self.where)


@dataclass
class Tally:
    target: str
    inputs: int = 0
    crash: int = 0
    unhandled: int = 0
    hang: int = 0
    violation: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    found: dict[str, str] = field(default_factory=dict)  # signature -> saved input file
    known: dict[str, int] = field(default_factory=dict)  # Known.reason -> how often

    @property
    def findings(self) -> int:
        return self.crash + self.unhandled + self.hang + self.violation


TALLIES: dict[str, Tally] = {}


def _signature(kind: str, error: BaseException) -> str:
    """Tell findings apart: the kind, the exception type and where it was raised: the
    innermost frame in postroom's code, or for a finding of the harness's own, the check
    that raised it (a ``require`` line)."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/src/postroom/" in f.filename]
    checks = [f for f in frames if "/tests/fuzz/" in f.filename
              and not f.filename.endswith("harness.py")]
    chosen = ours[-1] if ours and not isinstance(error, Finding) else \
        checks[-1] if checks else None
    where = f"{Path(chosen.filename).name}:{chosen.lineno}" if chosen else \
        re.sub(r"\d+", "N", str(error).split("\n", 1)[0])[:80]
    raw = f"{kind}|{type(error).__name__}|{where}"
    return hashlib.sha256(raw.encode()).hexdigest()[:10]


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Interrupt the input with Hang after ``seconds`` (main thread only; Python code
    only: a long C call ends first)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ring(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no result after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Target:
    """One fuzz target: ``check`` runs one input and counts its outcome."""

    def __init__(self, name: str, *, hang_after: float = 5.0, interrupt: bool = True,
                 known: tuple[Known, ...] = ()) -> None:
        self.name = name
        self.hang_after = hang_after
        self.interrupt = interrupt
        self.known = known
        self.tally = TALLIES.setdefault(name, Tally(name))

    def check(self, data: bytes, run: Callable[[], None]) -> None:
        """Run ``run()`` on one input (``data``: its bytes, saved if it fails). ``run``
        raises a Finding for a broken property; any other exception is unhandled. A
        finding that matches one of ``known`` is counted there and not raised."""
        tally = self.tally
        tally.inputs += 1
        start = time.monotonic()
        error: BaseException | None = None
        kind = ""
        try:
            with _alarm(self.hang_after * 4 if self.interrupt else 0):
                run()
        except Finding as e:
            error, kind = e, e.kind
        except Exception as e:
            error, kind = e, "unhandled"
        elapsed = time.monotonic() - start
        tally.seconds += elapsed
        tally.slowest = max(tally.slowest, elapsed)
        if error is None and elapsed > self.hang_after:
            error, kind = Hang(f"{elapsed:.1f} s for one input (limit {self.hang_after:g} s)"), \
                "hang"
        if error is None:
            return
        for k in self.known:
            if k.matches(kind, error):
                tally.known[k.reason] = tally.known.get(k.reason, 0) + 1
                return
        setattr(tally, kind, getattr(tally, kind) + 1)
        if not long_mode():
            raise error
        self._save(kind, error, data)

    def _save(self, kind: str, error: BaseException, data: bytes) -> None:
        sig = _signature(kind, error)
        root = os.environ.get(FOUND_VAR)
        if not root:
            self.tally.found.setdefault(sig, "")
            return
        where = Path(root) / self.name
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"{kind}-{sig}"
        if path.exists() and path.stat().st_size <= len(data):
            self.tally.found.setdefault(sig, str(path))
            return
        path.write_bytes(data)
        text = "".join(traceback.format_exception(error))
        path.with_name(path.name + ".txt").write_text(f"{kind}: {error}\n\n{text}")
        self.tally.found[sig] = str(path)


def write_stats(path: str) -> None:
    Path(path).write_text(json.dumps({name: asdict(t) for name, t in TALLIES.items()},
                                     indent=1))


# -- corpus ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    xfail: str | None  # the reason, while the input still fails


def corpus(target: str) -> list[Case]:
    """The inputs kept for ``target``, sorted by name."""
    where = CORPUS / target
    if not where.is_dir():
        return []
    cases = []
    for path in sorted(where.iterdir()):
        if path.suffix in (".xfail", ".md") or path.name.startswith(".") or not path.is_file():
            continue
        sidecar = path.with_name(path.name + ".xfail")
        reason = sidecar.read_text().strip() if sidecar.exists() else None
        cases.append(Case(path.name, path.read_bytes(), reason))
    return cases


def corpus_params(target: str) -> list[ParameterSet]:
    """Every corpus input as a pytest parameter; a known failure is xfail(strict=True)."""
    params = []
    for case in corpus(target):
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        params.append(pytest.param(case.data, id=case.name, marks=marks))
    return params


def corpus_examples(target: str,
                    to_arguments: Callable[[bytes], dict[str, Any]]) -> Callable[[F], F]:
    """Hypothesis ``@example`` entries made of the corpus inputs that pass (``to_arguments``
    turns one into the test's keyword arguments); the failing ones run, xfail, in the
    target's corpus test."""
    def decorate(test: F) -> F:
        for case in corpus(target):
            if case.xfail is None:
                test = example(**to_arguments(case.data))(test)
        return test
    return decorate
