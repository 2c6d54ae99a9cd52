"""The list courier: the seam to the (future) list engine."""

from __future__ import annotations

from postroom.delivery.list import ListCourier
from postroom.envelope import Envelope
from postroom.errors import PermanentFailure, TemporaryFailure
from postroom.types import Outcome
from tests.delivery.conftest import MESSAGE, make_job

LIST = "unix-admins@inf.example.ac.uk"


async def test_without_engine_defers_never_bounces() -> None:
    [a] = await ListCourier().deliver(make_job("list", "", [LIST]))
    assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.3.0")
    assert a.text == "list engine not available"


async def test_engine_takes_the_post() -> None:
    calls: list[tuple[Envelope, bytes, str]] = []

    async def engine(envelope: Envelope, message: bytes, list_address: str,
                     rcpt: str) -> None:
        calls.append((envelope, message, list_address))

    job = make_job("list", "", [LIST])
    [a] = await ListCourier(engine).deliver(job)
    assert a.outcome is Outcome.SENT
    assert calls == [(job.envelope, MESSAGE, LIST)]


async def test_engine_failures() -> None:
    async def engine(envelope: Envelope, message: bytes, list_address: str,
                     rcpt: str) -> None:
        if list_address.startswith("temp"):
            raise TemporaryFailure(452, "4.2.2", "archive full")
        if list_address.startswith("perm"):
            raise PermanentFailure(550, "5.7.1", "list is closed")
        raise RuntimeError("engine bug")

    attempts = await ListCourier(engine).deliver(
        make_job("list", "", ["temp@l.test", "perm@l.test", "bug@l.test"]))
    assert [(a.outcome, a.code, a.status) for a in attempts] == [
        (Outcome.DEFERRED, 452, "4.2.2"), (Outcome.FAILED, 550, "5.7.1"),
        (Outcome.DEFERRED, 451, "4.3.0")]
    assert "engine bug" in attempts[2].text
