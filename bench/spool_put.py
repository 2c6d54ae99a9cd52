"""Micro-benchmark of ``Spool.put``: durable puts per second for 4 KiB messages with 1, 20 and
100 concurrent writers (asyncio tasks on one event loop), fsync on.

    .venv/bin/python bench/spool_put.py             # the default table
    .venv/bin/python bench/spool_put.py --churn     # add put + delete rows

Rows:
- "raw create+fsync": the disk's own figure in the same run (one new file per message,
  write + fsync, no directory fsync, from as many threads as writers), to compare with
  ``/work/shared/reference/benchmarks.md``.
- "Spool.put": the spool as the SMTP layer uses it (writes and fsyncs in the event loop,
  directory fsyncs shared by the puts of one pass of the loop).
- "put + delete" (``--churn``): each writer also deletes its previous message, as a runner
  that delivers at once would; the steady state of a busy spool.

Each cell is the median of ``--repeat`` runs: puts/s, per-put latency p50/p99, and "cpu ms":
this process's CPU (user + system, all threads) per put. On a shared machine the rate swings
with the neighbours; the CPU per put much less.

History matters on this machine (ext4 without a journal): for one to six minutes after
inodes are freed, creating inodes near them costs up to 50 times more kernel CPU
(``recently_deleted``). So spools are kept until the end of the whole run, and a run made
right after another (or after a test run) is slower than one made on a quiet disk; "put +
delete" is the steady state of a busy spool, where the spool reuses freed files instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from postroom.envelope import Delivery, Envelope, Recipient
from postroom.queue.spool import Spool

Result = tuple[float, list[float], float]  # puts/s, latencies (s), CPU ms per put


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def envelope(i: int) -> Envelope:
    rcpt = f"user{i % 97}@example.org"
    return Envelope(sender="sender@example.net", arrival=time.time(),
                    recipients=[Recipient(rcpt, [Delivery("esmtp", "example.org", rcpt, rcpt)])],
                    client_addr="127.0.0.1", helo="bench")


def message(i: int, size: int) -> bytes:
    head = f"Received: from bench\r\nSubject: bench {i}\r\n\r\n".encode()
    return head + b"x" * max(0, size - len(head))


async def spool_run(root: Path, writers: int, count: int, size: int, churn: bool) -> Result:
    spool = Spool(root)
    latencies: list[float] = []
    next_i = 0

    async def writer() -> None:
        nonlocal next_i
        previous = ""
        while next_i < count:
            i = next_i
            next_i += 1
            data = message(i, size)
            t0 = time.perf_counter()
            qid = await spool.put(envelope(i), data)
            latencies.append(time.perf_counter() - t0)
            if churn:
                if previous:
                    spool.delete(previous)  # in the loop, as the runner does
                previous = qid

    await spool.put(envelope(-1), message(-1, size))  # start the pool outside the clock
    start, cpu = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    await spool.aclose()
    expected = 1 + (writers if churn else count)
    if len(spool.ids()) != expected:
        raise SystemExit(f"lost messages: {len(spool.ids())} != {expected}")
    return count / elapsed, latencies, cpu / count * 1000


def raw_run(root: Path, writers: int, count: int, size: int) -> Result:
    """One new file per message, write + fsync, from ``writers`` threads."""
    root.mkdir(parents=True, exist_ok=True)
    data = message(0, size)
    latencies: list[float] = []
    counter = iter(range(count))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            fd = os.open(root / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            latencies.append(time.perf_counter() - t0)

    start, cpu = time.perf_counter(), cpu_seconds()
    with ThreadPoolExecutor(writers) as pool:
        for _ in range(writers):
            pool.submit(work)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return count / elapsed, latencies, cpu / count * 1000


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--writers", default="1,20,100", help="concurrent writers (asyncio tasks)")
    ap.add_argument("--messages", type=int, default=3000, help="puts per run")
    ap.add_argument("--size", type=int, default=4096, help="message size in bytes")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell (median is shown)")
    ap.add_argument("--churn", action="store_true", help="add put + delete rows")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw fsync row")
    ap.add_argument("--dir", default=str(Path(__file__).resolve().parent.parent / "run"),
                    help="where to make the spools (default: run/ of the project); the disk "
                         "and even the directory matter, so compare like with like")
    args = ap.parse_args()
    writer_counts = [int(w) for w in args.writers.split(",")]

    Path(args.dir).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="spool-bench-", dir=args.dir))
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"spool dir: {base}  cpus: {os.cpu_count()}  loadavg before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"{args.messages} puts of {args.size} bytes per run, median of {args.repeat} runs\n")
    width = 32
    print(f"{'':32}" + "".join(f"{f'{w} writer' + ('s' if w > 1 else ''):>{width}}"
                               for w in writer_counts))
    print(f"{'':32}" + "".join(f"{'puts/s  p50/p99 ms  cpu ms':>{width}}"
                               for _ in writer_counts))
    runs = 0

    def row(label: str, run: Callable[[Path, int], Result]) -> None:
        nonlocal runs
        cells = []
        for w in writer_counts:
            results = []
            for _ in range(args.repeat):
                runs += 1
                results.append(run(base / f"run{runs}", w))
            rate, lat, cpu = sorted(results, key=lambda r: r[0])[len(results) // 2]
            cells.append(f"{rate:>9,.0f}  {pct(lat, .5):5.2f}/{pct(lat, .99):6.2f}  {cpu:6.3f}")
        print(f"{label:32}" + "".join(f"{c:>{width}}" for c in cells), flush=True)

    try:
        if not args.no_raw:
            row("raw create+fsync", lambda root, w: raw_run(root, w, args.messages, args.size))
        def put(root: Path, w: int) -> Result:
            return asyncio.run(spool_run(root, w, args.messages, args.size, False))

        row("Spool.put", put)
        if args.churn:
            def churn(root: Path, w: int) -> Result:
                return asyncio.run(spool_run(root, w, args.messages, args.size, True))

            row("put + delete", churn)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("\nloadavg after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
