"""``kill -9`` of the whole ``serve`` tree in the middle of a fan-out to 2,000 members, then
a restart: every member gets the post, and the copies that arrive twice (a transaction the
sink finished just before the kill, which postroom had not yet recorded) are counted and
printed for docs/performance.md."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import trustme

from tests.conftest import run
from tests.lists.test_engine_e2e import post, send, wait_for
from tests.serve.test_reload import route_to
from tests.server import Server, configure_site
from tests.sinks import Sink

LIST = "everyone@inf.example.ac.uk"
MEMBERS = 2000


async def test_kill_during_a_2000_member_fan_out_then_restart_delivers_to_everyone(
        example_site: Path, tmp_path: Path) -> None:
    site = example_site
    sink = await Sink().start()
    try:
        configure_site(site, trustme.CA())
        route_to(site, sink.port)
        members = [f"m{n:04d}@example.net" for n in range(MEMBERS)]
        (tmp_path / "members.txt").write_text("\n".join(members) + "\n")
        for args in (("db", "upgrade"), ("lists", "create", LIST),
                     ("lists", "set", LIST, "posting_policy=open"),
                     ("members", "add", LIST, "--file", str(tmp_path / "members.txt"))):
            done = run(*args, site=site)
            assert done.returncode == 0, done.stderr
        server = await asyncio.to_thread(lambda: Server(site, workers=2).start())
        try:
            await asyncio.to_thread(send, server, "boss@example.org", LIST,
                                    post("boss@example.org", "everyone please read", LIST))
            await wait_for(lambda: len(sink.messages) >= MEMBERS // 5, timeout=60)
            await asyncio.to_thread(server.kill)
            at_kill = len(sink.messages)
            assert at_kill < MEMBERS, "the fan-out ended before the kill; nothing was tested"
            server = await asyncio.to_thread(lambda: Server(site, workers=2).start())
            got = lambda: {r for m in sink.messages for r in m.rcpt_tos}  # noqa: E731
            await wait_for(lambda: len(got()) == MEMBERS, timeout=180)
            await asyncio.sleep(1.0)  # anything still on its way, to be counted
        finally:
            await asyncio.to_thread(server.stop)
        copies = Counter(r for m in sink.messages for r in m.rcpt_tos)
        assert set(copies) == set(members)
        repeats = sum(n - 1 for n in copies.values())
        print(f"\nfan-out kill: {at_kill} of {MEMBERS} copies delivered at the kill, "
              f"{repeats} repeated after the restart")
        # only the transactions in flight at the kill may repeat (queue.concurrency of
        # them at most, per process)
        assert repeats <= 2 * 20
        subjects = {m.content.split(b"\r\nSubject: ")[1].split(b"\r\n")[0]
                    for m in sink.messages if b"\r\nSubject: " in m.content}
        assert subjects == {b"everyone please read"}
    finally:
        await sink.stop()
