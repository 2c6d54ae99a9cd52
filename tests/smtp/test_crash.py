"""kill -9 during a load of concurrent sends: every message that got 250 is in the queue,
intact, and nothing half-written is visible."""

from __future__ import annotations

import re
import smtplib
import threading
import time
from pathlib import Path

from postroom.queue.spool import Spool
from tests.server import RELAY_IP, Server
from tests.smtp.smtp_client import client

QUEUED = re.compile(rb"Ok: queued as (\w+)")
FILLER = (b"x" * 76 + b"\r\n") * 52  # about 4 KiB, like smtp-source -l 4096


def test_kill_9_loses_no_accepted_message(site: Path) -> None:
    # neilb is forwarded to a host that refuses connections here, so every accepted message
    # stays queued (deferred) and can be checked after the crash
    server = Server(site, workers=4).start()  # what serve starts on a 2-core machine
    port = server.ports["mx"]
    accepted: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def sender(n: int) -> None:
        i = 0
        while not stop.is_set():
            token = f"token-{n}-{i}".encode()
            body = (b"Subject: crash test\r\n\r\n" + token + b"\r\n" + FILLER)
            try:
                with client(port, RELAY_IP) as c:
                    c.ehlo("loader")
                    c.mail("load@example.org")
                    c.rcpt("neilb@inf.example.ac.uk")
                    code, reply = c.data(body)
                if code == 250:
                    m = QUEUED.search(reply)
                    assert m
                    with lock:
                        accepted[m.group(1).decode()] = token
            except (OSError, smtplib.SMTPException) as e:
                errors.append(repr(e))
                if stop.is_set():
                    return
                time.sleep(0.01)
            i += 1

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(accepted) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL, mid-load
    stop.set()
    for t in threads:
        t.join(30)
    assert len(accepted) >= 150, f"the load did not get going: {errors[:3]}"
    with Spool(site / "queue") as spool:
        spool.recover()
        queued = set(spool.ids())
        missing = set(accepted) - queued
        assert not missing, f"{len(missing)} messages that got 250 are not in the queue"
        for qid, token in accepted.items():
            env = spool.load(qid)
            data = spool.read_message(qid)
            assert [r.address for r in env.recipients] == ["neilb@inf.example.ac.uk"]
            assert token + b"\r\n" + FILLER in data
            assert data.startswith(b"Received: ")
        # nothing but complete messages: every queued id has an envelope and a message
        for qid in queued:
            spool.load(qid)
            spool.read_message(qid)
    assert not any((site / "queue/tmp").iterdir())
