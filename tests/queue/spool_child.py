"""A separate process that writes to a spool, for the multi-process and crash tests.

    python spool_child.py put ROOT TAG COUNT TASKS [START_FILE]   put COUNT messages
    python spool_child.py loop ROOT TAG TASKS                      put until killed
    python spool_child.py churn ROOT TAG TASKS                     put, update, delete until
                                                                   killed
    python spool_child.py fsize ROOT LIMIT                         put under RLIMIT_FSIZE
    python spool_child.py lock ROOT                                hold the spool lock

Every put prints ``ID COUNTER`` (flushed) after ``put`` returned; ``churn`` prints
``P ID COUNTER`` after a put, ``U ID`` after an update (tries = COUNTER), ``d ID`` before and
``D ID`` after a delete of the message its task put three rounds before. Message and envelope are
derived from (TAG, COUNTER) by ``message`` and ``envelope``, so the test can check them.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import resource
import signal
import sys
import time
from pathlib import Path

from postroom.envelope import Delivery, Envelope, Recipient
from postroom.errors import QueueError
from postroom.queue.spool import Spool


def message(tag: str, counter: int) -> bytes:
    head = (f"Received: from child-{tag} by test; id {counter}\r\n"
            f"Message-Id: <{tag}.{counter}@test>\r\nSubject: message {counter}\r\n\r\n").encode()
    seed = hashlib.sha256(f"{tag}:{counter}".encode()).digest()  # binary bytes, varied size
    return head + seed * (counter * 37 % 300)


def envelope(tag: str, counter: int) -> Envelope:
    rcpt = f"r{counter}@example.org"
    return Envelope(sender=f"s{counter}@{tag}.test", arrival=time.time(), envid=f"{tag}:{counter}",
                    recipients=[Recipient(rcpt, [Delivery("esmtp", "example.org", rcpt, rcpt)])])


async def put_many(spool: Spool, tag: str, counters: itertools.count[int] | range,
                   tasks: int) -> None:
    it = iter(counters)

    async def worker() -> None:
        for counter in it:
            qid = await spool.put(envelope(tag, counter), message(tag, counter))
            sys.stdout.write(f"{qid} {counter}\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker() for _ in range(tasks)))


async def churn(spool: Spool, tag: str, tasks: int) -> None:
    counters = itertools.count()

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def worker() -> None:
        mine: list[str] = []
        for counter in counters:
            env = envelope(tag, counter)
            qid = await spool.put(env, message(tag, counter))
            say(f"P {qid} {counter}")
            env.recipients[0].deliveries[0].tries = counter
            await asyncio.to_thread(spool.update, env)
            say(f"U {qid}")
            mine.append(qid)
            if len(mine) > 3:
                old = mine.pop(0)
                say(f"d {old}")
                await asyncio.to_thread(spool.delete, old)
                say(f"D {old}")

    await asyncio.gather(*(worker() for _ in range(tasks)))


def main(argv: list[str]) -> int:
    mode, root = argv[0], Path(argv[1])
    if mode == "put":
        tag, count, tasks = argv[2], int(argv[3]), int(argv[4])
        spool = Spool(root)
        if len(argv) > 5:
            print("ready", flush=True)
            while not os.path.exists(argv[5]):
                time.sleep(0.001)
        asyncio.run(put_many(spool, tag, range(count), tasks))
        spool.close()
    elif mode == "loop":
        tag, tasks = argv[2], int(argv[3])
        asyncio.run(put_many(Spool(root), tag, itertools.count(), tasks))
    elif mode == "churn":
        asyncio.run(churn(Spool(root), argv[2], int(argv[3])))
    elif mode == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails: EFBIG
        spool = Spool(root)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(argv[2]), int(argv[2])))
        try:
            spool.put_sync(envelope("fsize", 1), b"Subject: big\r\n\r\n" + b"x" * 65536)
        except QueueError as e:
            print(f"QueueError: {e}")
            return 0
        print("queued")
        return 1
    elif mode == "lock":
        spool = Spool(root)
        spool._share_lock()
        print("ready", flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
