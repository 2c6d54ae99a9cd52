"""The fuzz harness itself: the SMTP judge tells good sessions from broken ones, a target
raises in the short mode and counts and saves in the long one, a known finding is
counted and not raised, and the corpus marks failing inputs xfail(strict=True)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz import harness
from tests.fuzz.harness import Hang, Known, Target, Unhandled, Violation
from tests.fuzz.smtp_streams import judge

GREETING = b"220 mail.example postroom\r\n"


@pytest.mark.parametrize(("out", "ending"), [
    (GREETING + b"250-mail.example\r\n250 OK\r\n221 2.0.0 Bye\r\n", "eof"),
    (GREETING + b"250 OK\r\n221 2.0.0 Bye\r\n", "reset"),
    (GREETING + b"220 2.0.0 Ready to start TLS\r\n\x15\x03\x01", "tls"),
    (b"554 5.7.1 Access denied\r\n", "eof"),
    (GREETING + b"500 no\r\n" * 4 + b"502 5.5.1 Too many unrecognized commands, goodbye.\r\n",
     "eof"),
    (GREETING + b"421 4.4.2 timeout\r\n", "eof"),
])
def test_judge_passes_good_sessions(out: bytes, ending: str) -> None:
    judge(out, ending)


@pytest.mark.parametrize(("out", "ending", "finding"), [
    (b"", "eof", Violation),                                       # closed without a word
    (b"", "open", Hang),                                           # never greeted
    (GREETING + b"250 OK\r\n", "open", Hang),                      # no end after QUIT
    (GREETING + b"250 OK\r\n", "eof", Violation),                  # closed without 221
    (GREETING + b"25 OK\r\n221 Bye\r\n", "eof", Violation),        # not a reply line
    (GREETING + b"250 a\rb\r\n221 Bye\r\n", "eof", Violation),     # a bare CR in a reply
    (GREETING + b"250-a\r\n251 b\r\n221 Bye\r\n", "eof", Violation),  # codes disagree
    (GREETING + b"221 Bye", "eof", Violation),                     # cut off
    (b"250 OK\r\n221 Bye\r\n", "eof", Violation),                  # no greeting
    (GREETING + b"500 5.5.2 Error: (KeyError) 'x'\r\n221 Bye\r\n", "eof", Unhandled),
])
def test_judge_finds_broken_sessions(out: bytes, ending: str,
                                     finding: type[Exception]) -> None:
    with pytest.raises(finding):
        judge(out, ending)


def _boom() -> None:
    raise KeyError("boom")


def test_short_mode_raises_the_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(harness.EXAMPLES_VAR, raising=False)
    t = Target("test-short")
    with pytest.raises(KeyError):
        t.check(b"x", _boom)
    with pytest.raises(Violation):
        t.check(b"x", lambda: harness.require(False, "broken"))
    assert (t.tally.inputs, t.tally.unhandled, t.tally.violation) == (2, 1, 1)
    del harness.TALLIES["test-short"]


def test_long_mode_counts_and_keeps_the_smallest(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv(harness.EXAMPLES_VAR, "10")
    monkeypatch.setenv(harness.FOUND_VAR, str(tmp_path))
    t = Target("test-long", known=(Known(r"^unhandled ValueError: known", "a known bug"),))
    t.check(b"long input", _boom)
    t.check(b"in", _boom)
    t.check(b"big input", _boom)

    def known() -> None:
        raise ValueError("known bug")

    t.check(b"k", known)
    t.check(b"ok", lambda: None)
    assert (t.tally.inputs, t.tally.unhandled, t.tally.known) == (5, 3, {"a known bug": 1})
    (saved,) = t.tally.found.values()
    assert Path(saved).read_bytes() == b"in"
    assert "KeyError: 'boom'" in Path(saved + ".txt").read_text()
    del harness.TALLIES["test-long"]


def test_a_slow_input_is_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(harness.EXAMPLES_VAR, raising=False)
    t = Target("test-hang", hang_after=0.05)

    def spin() -> None:
        while True:
            pass

    with pytest.raises(Hang):
        t.check(b"x", spin)  # interrupted after 4 x hang_after
    del harness.TALLIES["test-hang"]


def test_corpus_marks_failing_inputs_xfail(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "fixed").write_bytes(b"a")
    (tmp_path / "t" / "broken").write_bytes(b"b")
    (tmp_path / "t" / "broken.xfail").write_text("not fixed yet\n")
    monkeypatch.setattr(harness, "CORPUS", tmp_path)
    params = {p.id: p for p in harness.corpus_params("t")}
    assert params["fixed"].values == (b"a",) and not params["fixed"].marks
    (mark,) = params["broken"].marks
    assert mark.name == "xfail" and mark.kwargs == {"strict": True, "reason": "not fixed yet"}
