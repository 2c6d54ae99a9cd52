"""``inject.Paced``: many messages queued at once (a list post's fan-out) are durable when
``put`` returns and start a few at a time; each is delivered exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

from postroom.queue import accept
from postroom.runner.inject import Paced
from postroom.types import Attempt, Courier, Job
from tests.runner.test_runner import MSG, Rig, rig  # noqa: F401  (the fixture)

RCPTS = ["neilb@inf.example.ac.uk"]  # forwarded to staffmail: the sink


class Watching:
    """A courier that counts the messages it is delivering at once."""

    def __init__(self, inner: Courier) -> None:
        self.inner = inner
        self.busy: set[str] = set()
        self.most = 0

    async def deliver(self, job: Job) -> list[Attempt]:
        self.busy.add(job.queue_id)
        self.most = max(self.most, len(self.busy))
        try:
            await asyncio.sleep(0.02)
            return await self.inner.deliver(job)
        finally:
            self.busy.discard(job.queue_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_paced_messages_are_durable_at_once_and_start_a_window_at_a_time(
        rig: Rig) -> None:  # noqa: F811
    runner = rig.runner
    watching = Watching(runner.couriers["esmtp"])
    runner.couriers["esmtp"] = watching
    loop = asyncio.ensure_future(runner.run())
    try:
        paced = Paced(runner, window=2)
        qids = []
        for _ in range(8):
            resolver = runner.reloader.current.resolver
            env = accept.new_envelope("rt@inf.example.ac.uk", [
                accept.make_recipient(r, resolver.resolve(r).routes) for r in RCPTS])
            env.arrival = rig.clock.now
            qids.append(await paced.put(env, MSG))
        # every message is in the queue (durable) or delivered when the puts return
        assert len(set(rig.spool.ids()) & set(qids)) + len(rig.sink.messages) >= 8
        for _ in range(500):
            if not rig.spool.ids():
                break
            await asyncio.sleep(0.02)
        assert rig.spool.ids() == []
    finally:
        await runner.stop()
        await loop
    assert 1 <= watching.most <= 2
    assert len(rig.sink.messages) == 8
    assert Counter(r for m in rig.sink.messages for r in m.rcpt_tos) == {
        "neilb@staffmail.example.ac.uk": 8}
    assert runner.claims.reserved == set()


async def test_a_slow_round_holds_the_next_messages_back_only_for_the_patience(
        rig: Rig) -> None:  # noqa: F811
    """A message whose round waits for a slow destination counts against the window
    for ``patience`` seconds only: the messages after it do not wait for its timeout."""
    runner = rig.runner
    inner = runner.couriers["esmtp"]
    gate = asyncio.Event()
    delivered: list[str] = []

    class FirstOneHangs(Watching):
        async def deliver(self, job: Job) -> list[Attempt]:
            if not delivered:
                delivered.append(job.queue_id)
                await gate.wait()  # a destination that does not answer
            else:
                delivered.append(job.queue_id)
            return await self.inner.deliver(job)

    runner.couriers["esmtp"] = FirstOneHangs(inner)
    loop = asyncio.ensure_future(runner.run())
    try:
        paced = Paced(runner, window=1, patience=0.2)
        resolver = runner.reloader.current.resolver
        for _ in range(3):
            env = accept.new_envelope("rt@inf.example.ac.uk", [
                accept.make_recipient(r, resolver.resolve(r).routes) for r in RCPTS])
            env.arrival = rig.clock.now
            await paced.put(env, MSG)
        for _ in range(100):
            if len(rig.sink.messages) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(rig.sink.messages) == 2  # the two after the hanging one
        gate.set()
        for _ in range(100):
            if not rig.spool.ids():
                break
            await asyncio.sleep(0.02)
        assert rig.spool.ids() == [] and len(rig.sink.messages) == 3
    finally:
        gate.set()
        await runner.stop()
        await loop
