"""The list engine's periodic work in a real ``serve``: a ``[[lists.sync]]`` source is
applied at start and a shrinking one refused, an expired held post is discarded with its
sender told and the moderators reminded of the rest."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import trustme

from postroom import control
from postroom.serve.periodic import read_state
from tests.conftest import run
from tests.lists.test_engine_e2e import ok, parsed, post, send, wait_for
from tests.serve.test_reload import route_to
from tests.server import Server, configure_site
from tests.sinks import Sink

LIST = "physics@inf.example.ac.uk"


async def test_sync_source_is_applied_at_start_and_a_shrinking_one_refused(
        example_site: Path) -> None:
    site = example_site
    configure_site(site, trustme.CA())
    ok("db", "upgrade", site=site)
    ok("lists", "create", LIST, site=site)
    ok("members", "add", LIST, "old@example.net", site=site)
    source = site / "members-physics.txt"
    source.write_text("# from the school's database\nann@example.net\nBob <bob@example.org>\n"
                      + "".join(f"m{n}@example.com\n" for n in range(8)))
    with (site / "postroom.toml").open("a") as f:
        f.write(f'\n[lists]\nsync_max_shrink = 20\n\n[[lists.sync]]\nlist = "{LIST}"\n'
                f'file = "members-physics.txt"\nevery = "1h"\n')
    server = await asyncio.to_thread(lambda: Server(site, workers=1).start())
    try:
        await wait_for(lambda: "list-sync" in read_state(site / "state"))
        listing = ok("members", "list", LIST, site=site)
        assert "ann@example.net" in listing and "old@example.net" not in listing
        assert "10 members" in listing
        state = read_state(site / "state")["list-sync"]
        assert state["ok"] is True and "+10 -1" in state["said"]
        # a source that lost half its lines (a failed export upstream) removes nobody
        source.write_text("ann@example.net\nbob@example.org\nm0@example.com\n")
        reply = await asyncio.to_thread(control.request, site / "state", "run", "list-sync")
        assert reply is not None and reply["ok"] is False and reply["task"] == "list-sync"
        assert reply["said"].startswith(f"{LIST}: not synced, nobody added or removed: "
                                        "the list would shrink from 10 to 3 members")
        assert "10 members" in ok("members", "list", LIST, site=site)
        assert "list-sync: FAILED" in server.log()
    finally:
        await asyncio.to_thread(server.stop)


async def test_expired_held_post_is_discarded_and_moderators_reminded_of_the_rest(
        example_site: Path) -> None:
    site = example_site
    sink = await Sink().start()
    try:
        configure_site(site, trustme.CA())
        route_to(site, sink.port)
        ok("db", "upgrade", site=site)
        ok("lists", "create", LIST, "--owner", "owner@example.net", site=site)
        ok("lists", "set", LIST, "held_expiry_days=2", site=site)
        server = await asyncio.to_thread(lambda: Server(site, workers=1).start())
        try:
            for who in ("old@example.net", "new@example.net"):
                await asyncio.to_thread(send, server, who, LIST, post(who, f"from {who}"))
            await wait_for(lambda: len(sink.messages) == 2)  # the held notices to the owner
            with sqlite3.connect(site / "postroom.db") as db:  # the first one, 3 days ago
                db.execute("UPDATE held_messages SET received = datetime('now', '-3 days') "
                           "WHERE sender = 'old@example.net'")
            before = len(sink.messages)
            reply = await asyncio.to_thread(control.request, site / "state", "run", "held")
            assert reply is not None and reply["ok"] is True, reply
            assert reply["said"] == "1 held post(s) expired, 1 reminder(s) sent"
            await wait_for(lambda: len(sink.messages) == before + 2)
            told = [parsed(m) for m in sink.messages if m.rcpt_tos == ["old@example.net"]]
            assert told and "within 2 days" in told[0].get_content()
            (reminder,) = [parsed(m) for m in sink.messages[before:]
                           if m.rcpt_tos == ["owner@example.net"]]
            assert reminder["Subject"] == f"{LIST}: 1 held post(s) waiting"
            assert "new@example.net" in reminder.get_content()
            held = run("held", "list", site=site).stdout
            assert "new@example.net" in held and "old@example.net" not in held
        finally:
            await asyncio.to_thread(server.stop)
    finally:
        await sink.stop()

