"""Fuzz target ``smtp_server``: a real ``postroom serve`` (one intake process), started once
for the module, fed random byte streams over raw sockets: commands, pipelined
transactions, DATA bodies and garbage, in random packets, from an internal, an upstream
and an outside address, to the mx and submission listeners.

Per input: the replies have the property in ``tests.fuzz.smtp_streams`` (well formed,
closing only after 221/421, in time), the server's output shows no traceback, the
process is alive and a fresh connection is greeted with 220. Each input is one
connection (two with the greeting check), so the short budget keeps the number small.

The site: the example site on port-0 listeners, with a 64 KiB size limit, 5 recipients
per message and a 4 KiB header limit (so that those paths are reached), deliveries to a
port that refuses (what is accepted stays deferred; nothing leaves loopback).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given

from tests.fuzz.harness import (
    Crash,
    Target,
    Unhandled,
    corpus_examples,
    corpus_params,
    fuzz_settings,
    long_mode,
)
from tests.fuzz.smtp_streams import (
    KNOWN,
    Session,
    converse,
    greets,
    judge,
    make_site,
    session_of,
    sessions,
)
from tests.server import Server

TARGET = Target("smtp_server", hang_after=30.0, interrupt=False, known=KNOWN)
# what a traceback or a logged error looks like in `postroom serve` output (not matching
# aiosmtpd's "unrecognised: <the client's text>" warnings)
TROUBLE = re.compile(r"Traceback \(most recent call last\)|queue write failed|SMTP session "
                     r"exception|Exception in |exception was never retrieved|Unhandled "
                     r"exception|Fatal error|exited with")


@dataclass
class Live:
    """The server under test, restarted after a crash in the long mode."""

    site: Path
    server: Server
    seen: int = 0  # output lines already looked at
    troubles: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Live({self.site}, ports={self.server.ports})"

    def port(self, listener: str) -> int:
        return self.server.ports[listener]

    def new_output(self, settle: float = 0.02) -> list[str]:
        """The server's output since the last call, once it has been quiet ``settle`` s
        (it logs before it replies; the thread that reads its pipe may lag)."""
        deadline = time.monotonic() + 1.0
        count = len(self.server.output)
        while time.monotonic() < deadline:
            time.sleep(settle)
            if len(self.server.output) == count:
                break
            count = len(self.server.output)
        lines = self.server.output[self.seen:count]
        self.seen = count
        return lines

    def restart(self) -> None:
        try:
            self.server.kill()
        except Exception:  # already gone
            pass
        self.server = Server(self.site, workers=1).start()
        self.seen = 0


@pytest.fixture(scope="module")
def live(example_template: Path, tmp_path_factory: pytest.TempPathFactory,
         closed_port: int) -> Iterator[Live]:
    site = make_site(example_template, tmp_path_factory.mktemp("fuzz-serve") / "site",
                     closed_port)
    live = Live(site, Server(site, workers=1).start())
    live.new_output()
    yield live
    live.server.stop()


def run_session(live: Live, session: Session) -> None:
    out, ending = converse(live.port(session.listener), session)
    output = live.new_output()
    first = next((n for n, line in enumerate(output) if TROUBLE.search(line)), None)
    trouble = output[first:first + 40] if first is not None else []
    if live.server.proc is not None and live.server.proc.poll() is not None:
        raise Crash(f"postroom serve exited with {live.server.proc.returncode}:\n"
                    + "".join(output[-30:]))
    greeting = greets(live.port("mx"))
    if not greeting.startswith(b"220 "):
        raise Crash(f"a fresh connection got {greeting!r}, not a 220 greeting")
    if trouble:
        raise Unhandled("the server's output shows trouble:\n" + "".join(trouble))
    judge(out, ending)


def check(live: Live, session: Session) -> None:
    try:
        run_session(live, session)
    except Crash:
        if long_mode():  # count it, then go on with a fresh server
            live.restart()
        raise


@corpus_examples("smtp", lambda data: {"session": session_of(data)})
@fuzz_settings(150)
@given(session=sessions())
def test_real_server_answers_every_stream(live: Live, session: Session) -> None:
    TARGET.check(session.stream, lambda: check(live, session))


@pytest.mark.parametrize("data", corpus_params("smtp"))
def test_corpus(live: Live, data: bytes) -> None:
    live.new_output()  # what earlier tests left
    run_session(live, session_of(data))


def test_server_survived(live: Live) -> None:
    """Last: the server is the one started for the module and still greets."""
    assert live.server.proc is not None and live.server.proc.poll() is None
    assert greets(live.port("mx")).startswith(b"220 ")
