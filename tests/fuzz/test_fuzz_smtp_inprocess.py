"""Fuzz target ``smtp_inprocess``: the same streams as ``smtp_server``, to postroom's SMTP
session (``PostroomSMTP`` with the real ``Handler``, built as ``Intake._session`` builds
it) running in this process (tests/smtp/inprocess.py), one event loop per input. Faster
than the real server, and it sees what the process sees: every log record at ERROR, and
exceptions the event loop reports.

The queue is a stand-in that does what the spool does before it writes anything: it
serialises the envelope (``Envelope.to_json``), and an envelope JSON cannot encode is a
QueueError, as queue/commit.py makes it. Nothing is stored; what a real spool does with a
message is the ``smtp_server`` target's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from postroom import maillog
from postroom.envelope import Envelope
from postroom.errors import QueueError
from postroom.runtime import Reloader
from postroom.smtp.handler import Handler
from postroom.smtp.server import PostroomSMTP
from postroom.smtp.tls import server_context
from tests.fuzz.harness import (
    Target,
    Unhandled,
    corpus_examples,
    corpus_params,
    fuzz_settings,
)
from tests.fuzz.smtp_streams import (
    KNOWN,
    STARTED_TLS,
    TERMINATOR,
    Session,
    judge,
    make_site,
    session_of,
    sessions,
)
from tests.smtp.inprocess import serving

TIMEOUT = 10.0
TARGET = Target("smtp_inprocess", hang_after=20.0, interrupt=False, known=KNOWN)


class Errors(logging.Handler):
    """Log records at ERROR and above, while a session runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.records.append(text)


class Intake:
    """One listener's handler per role and sessions made as Intake._session makes them."""

    def __init__(self, site: Path) -> None:
        self.reloader = Reloader(site)
        current = self.reloader.current.site
        self.ctx = server_context(current, required=True)
        self.handlers = {
            lst.name: Handler(listener=lst, reloader=self.reloader, queue=self.queue)
            for lst in current.profile.listeners if lst.role != "submissions"}
        self.queued = 0

    async def queue(self, env: Envelope, message: bytes) -> str:
        try:
            env.to_json()
        except ValueError as e:  # as queue/commit.py turns it
            raise QueueError(f"cannot queue message: bad envelope: {e}") from e
        self.queued += 1
        return env.id

    def session(self, name: str) -> PostroomSMTP:
        handler = self.handlers[name]
        p = self.reloader.current.site.profile
        role = handler.role
        return PostroomSMTP(
            handler, hostname=p.site.hostname, ident="postroom",
            data_size_limit=p.limits.message_size, enable_SMTPUTF8=True,
            decode_data=False, timeout=p.limits.idle_timeout,
            line_length=p.limits.line_length,
            auth_required=role != "mx", auth_require_tls=True,
            tls_context=self.ctx, require_starttls=role == "submission",
            implicit_tls=False, loop=asyncio.get_running_loop())


@pytest.fixture(scope="module")
def intake(example_template: Path, tmp_path_factory: pytest.TempPathFactory,
           closed_port: int) -> Iterator[Intake]:
    site = make_site(example_template, tmp_path_factory.mktemp("fuzz-inprocess") / "site",
                     closed_port)
    maillog.open_log(site / "log/mail.log", "mail.inf.example.ac.uk")
    try:
        yield Intake(site)
    finally:
        maillog.close_log()


@contextlib.contextmanager
def errors_logged() -> Iterator[Errors]:
    catcher = Errors()
    root = logging.getLogger()
    root.addHandler(catcher)
    try:
        yield catcher
    finally:
        root.removeHandler(catcher)


async def converse(port: int, session: Session) -> tuple[bytes, str]:
    """As smtp_streams.converse, on asyncio streams in the server's own loop."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, local_addr=(session.source, 0)), TIMEOUT)
    out = bytearray()
    ending = "open"

    async def read_all() -> None:
        nonlocal ending
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    ending = "eof"
                    return
                out.extend(data)
                if STARTED_TLS.search(out):
                    ending = "tls"
                    return
        except ConnectionError:
            ending = "reset"

    task = asyncio.create_task(read_all())
    try:
        if session.wait_greeting:
            async with asyncio.timeout(TIMEOUT):
                while b"\r\n" not in out and not task.done():
                    await asyncio.sleep(0.001)
        for chunk in (*session.chunks, TERMINATOR):
            if task.done():
                break
            writer.write(chunk)
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(session.pause)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), TIMEOUT)
    finally:
        task.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return bytes(out), ending


async def serve_one(intake: Intake, session: Session) -> tuple[bytes, str, list[str]]:
    loop_errors: list[str] = []

    def note(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        loop_errors.append(f"{context.get('message')}: {exc!r}")

    asyncio.get_running_loop().set_exception_handler(note)
    async with serving(lambda: intake.session(session.listener)) as port:
        out, ending = await converse(port, session)
        await asyncio.sleep(0.005)  # let the session finish what it logs
    return out, ending, loop_errors


def run_session(intake: Intake, session: Session) -> None:
    with errors_logged() as logged:
        out, ending, loop_errors = asyncio.run(serve_one(intake, session))
    trouble = logged.records + loop_errors
    if trouble:
        raise Unhandled("the session logged errors:\n" + "\n".join(trouble)[:4000])
    judge(out, ending)


@corpus_examples("smtp", lambda data: {"session": session_of(data)})
@fuzz_settings(300)
@given(session=sessions(listeners=("mx", "mx", "mx", "submission")))
def test_session_answers_every_stream(intake: Intake, session: Session) -> None:
    TARGET.check(session.stream, lambda: run_session(intake, session))


@pytest.mark.parametrize("data", corpus_params("smtp"))
def test_corpus(intake: Intake, data: bytes) -> None:
    run_session(intake, session_of(data))
