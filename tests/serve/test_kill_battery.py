"""Crash, restart, exactly once: the whole process tree of ``postroom serve`` is killed
with SIGKILL at random moments while 8 senders load it, restarted each time, and finally
drained to a sink that records a unique token per message. Every message that got 250
arrives; repeats (a message the sink stored just before the kill, whose 250 postroom had
not recorded yet) are counted and printed, for docs/performance.md."""

from __future__ import annotations

import asyncio
import random
import re
import smtplib
import threading
import time
from collections import Counter
from pathlib import Path

import trustme

from tests.serve.test_reload import route_to, wait_for
from tests.server import RELAY_IP, Server, configure_site
from tests.sinks import Sink
from tests.smtp.smtp_client import client

KILLS = 20
SENDERS = 8
TOKEN = re.compile(rb"token-\d+-\d+")


async def test_kills_under_load_lose_nothing_and_repeats_are_counted(
        example_site: Path) -> None:
    sink = await Sink().start()
    configure_site(example_site, trustme.CA())
    route_to(example_site, sink.port)
    rng = random.Random(20261201)
    accepted: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()
    port = [0]
    errors: list[str] = []
    resent: set[bytes] = set()

    def sender(n: int) -> None:
        i = 0
        while not stop.is_set():
            token = f"token-{n}-{i}".encode()
            sent_data = False
            try:
                with client(port[0], RELAY_IP) as c:
                    c.ehlo("loader")
                    c.mail("load@example.org")
                    c.rcpt("neilb@inf.example.ac.uk")
                    sent_data = True
                    code, _ = c.data(b"Subject: kill battery\r\n\r\n" + token + b"\r\n")
                if code == 250:
                    with lock:
                        accepted.append(token)
                i += 1
            except (OSError, smtplib.SMTPException) as e:
                errors.append(repr(e))
                if sent_data:
                    # the kill came after our message went out: the server may have queued
                    # it without our hearing 250; like any client we send it again, so a
                    # second copy of this token is ours (RFC 1047), not the server's
                    with lock:
                        resent.add(token)
                time.sleep(0.02)  # the server is down or restarting: try again

    server = await asyncio.to_thread(lambda: Server(example_site, workers=2).start())
    port[0] = server.ports["mx"]
    threads = [threading.Thread(target=sender, args=(n,), daemon=True)
               for n in range(SENDERS)]
    for t in threads:
        t.start()
    try:
        for _ in range(KILLS):
            # under load again (whatever a restart costs on this machine), then kill
            before = len(accepted)
            deadline = time.monotonic() + 10
            while len(accepted) < before + SENDERS and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(rng.uniform(0.05, 0.4))
            await asyncio.to_thread(server.kill)
            server = await asyncio.to_thread(lambda: Server(example_site, workers=2).start())
            port[0] = server.ports["mx"]
        await asyncio.sleep(0.5)
        stop.set()
        for t in threads:
            await asyncio.to_thread(t.join, 30)
        want = set(accepted)

        def arrived() -> Counter[bytes]:
            return Counter(m.group(0) for msg in sink.messages
                           for m in [TOKEN.search(msg.content)] if m)

        await wait_for(lambda: want <= set(arrived()), timeout=60)
    finally:
        stop.set()
        await asyncio.to_thread(server.stop)
        await sink.stop()
    got = arrived()
    ours = sum(n - 1 for t, n in got.items() if n > 1 and t not in resent)
    theirs = sum(n - 1 for t, n in got.items() if n > 1 and t in resent)
    print(f"\nkill battery: {KILLS} kills, {len(want)} accepted, 0 lost, {ours} repeated by "
          f"the server, {theirs} more from clients that sent again after a lost 250")
    assert len(want) > 100, f"the load did not get going: {errors[:3]}"
    assert want - set(got) == set()  # nothing that got 250 is lost
