"""The courier seam: Attempt, Job, the contract guard and the factory."""

from __future__ import annotations

import pytest

from postroom.delivery import (
    EsmtpCourier,
    FileCourier,
    ListCourier,
    LocalCourier,
    ProgCourier,
    RelayCourier,
    aclose_all,
    couriers_for,
)
from postroom.delivery.smtp_client import parse_reply
from postroom.envelope import Delivery, RcptState
from postroom.runner.contract import deliver_job, jobs_for
from postroom.types import Attempt, Job, Outcome, deferred, failed
from tests.delivery.conftest import MESSAGE, SiteFactory, make_job


async def test_couriers_for_builds_every_mailer(make_site: SiteFactory) -> None:
    couriers = couriers_for(make_site())
    try:
        kinds = {name: type(c) for name, c in couriers.items()}
        assert kinds == {"esmtp": EsmtpCourier, "relay": RelayCourier, "local": LocalCourier,
                         "prog": ProgCourier, "file": FileCourier, "list": ListCourier}
        esmtp, relay = couriers["esmtp"], couriers["relay"]
        assert isinstance(esmtp, EsmtpCourier) and isinstance(relay, RelayCourier)
        assert esmtp.resolver is relay.resolver
    finally:
        await aclose_all(couriers)


async def test_couriers_for_passes_the_list_engine(make_site: SiteFactory) -> None:
    taken: list[str] = []

    async def engine(envelope: object, message: bytes, list_address: str,
                     rcpt: str) -> None:
        taken.append(list_address)

    couriers = couriers_for(make_site(), list_handler=engine)
    [a] = await couriers["list"].deliver(make_job("list", "", ["l@inf.example.ac.uk"]))
    assert a.outcome is Outcome.SENT and taken == ["l@inf.example.ac.uk"]
    await aclose_all(couriers)


class Raising:
    async def deliver(self, job: Job) -> list[Attempt]:
        raise RuntimeError("courier bug")

    async def aclose(self) -> None:
        return None


class Forgetful:
    async def deliver(self, job: Job) -> list[Attempt]:
        return [failed(job.deliveries[1], "only this one", status="5.1.1")]

    async def aclose(self) -> None:
        return None


async def test_deliver_job_turns_a_crash_into_deferrals() -> None:
    job = make_job("esmtp", "example.test", ["a@example.test", "b@example.test"])
    attempts = await deliver_job(Raising(), job)
    assert [(a.delivery, a.outcome, a.status) for a in attempts] == [
        (d, Outcome.DEFERRED, "4.3.0") for d in job.deliveries]
    assert "courier bug" in attempts[0].text


async def test_deliver_job_fills_in_missing_attempts_in_order() -> None:
    job = make_job("esmtp", "example.test", ["a@example.test", "b@example.test"])
    attempts = await deliver_job(Forgetful(), job)
    assert [a.outcome for a in attempts] == [Outcome.DEFERRED, Outcome.FAILED]
    assert [a.delivery for a in attempts] == job.deliveries


@pytest.mark.parametrize(("outcome", "state"), [(Outcome.SENT, RcptState.SENT),
                                                (Outcome.DEFERRED, RcptState.DEFERRED),
                                                (Outcome.FAILED, RcptState.FAILED)])
def test_attempt_apply(outcome: Outcome, state: RcptState) -> None:
    d = Delivery("esmtp", "example.test", "a@example.test", "a@example.test", tries=2)
    Attempt(d, outcome, 451, "4.4.1", "Connection refused", "mx [192.0.2.1]").apply()
    assert (d.state, d.tries, d.last_error, d.status, d.remote_mta) == (
        state, 3, "451 4.4.1 Connection refused", "4.4.1", "mx [192.0.2.1]")


def test_jobs_for_groups_by_mailer_and_host() -> None:
    job = make_job("esmtp", "a.test", ["x@a.test"])
    env = job.envelope
    ds = [Delivery("esmtp", "a.test", "1@a.test", "1"), Delivery("local", "", "rt", "rt"),
          Delivery("esmtp", "b.test", "2@b.test", "2"), Delivery("esmtp", "A.test", "3@a.test",
                                                                 "3")]
    env.id = "Q1"
    jobs = list(jobs_for(env, MESSAGE, ds).values())
    assert [[d.user for d in j.deliveries] for j in jobs] == [["1@a.test", "3@a.test"], ["rt"],
                                                             ["2@b.test"]]
    assert [(j.mailer, j.host) for j in jobs] == [("esmtp", "a.test"), ("local", ""),
                                                  ("esmtp", "b.test")]
    assert all(j.queue_id == "Q1" and j.message is MESSAGE for j in jobs)


def test_job_recipient_and_reply_text() -> None:
    job = make_job("prog", "", ['"|/bin/true"'])
    job.envelope.recipients[0].address = "rt@inf.example.ac.uk"
    assert job.original_recipient(job.deliveries[0]) == "rt@inf.example.ac.uk"
    stray = Delivery("prog", "", "x", "x")
    assert job.recipient(stray) is None and job.original_recipient(stray) == "x"
    assert deferred(stray, "later").reply == "451 4.3.0 later"


@pytest.mark.parametrize(("code", "message", "expected"), [
    (250, "2.0.0 Ok: queued as X", ("2.0.0", "Ok: queued as X")),
    (250, "OK", ("2.0.0", "OK")),
    (550, "5.1.1 <b@x>: Recipient address rejected\n5.1.1 see https://x", (
        "5.1.1", "<b@x>: Recipient address rejected see https://x")),
    (451, "5.7.1 confused server", ("4.7.1", "confused server")),
    (421, "", ("4.0.0", "")),
])
def test_parse_reply(code: int, message: str, expected: tuple[str, str]) -> None:
    assert parse_reply(code, message) == expected
