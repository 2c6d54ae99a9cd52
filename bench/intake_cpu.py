"""postroom alone under smtp-source: msg/s and the server's CPU per message, split into user
and system time, optionally with a profile. The tool for finding where intake CPU goes;
the comparison with Postfix is ``bench_intake.py``.

    .venv/bin/python bench/intake_cpu.py                     # 1 rcpt, 5,000 messages
    .venv/bin/python bench/intake_cpu.py --rcpts 10 --workers 2
    .venv/bin/python bench/intake_cpu.py --profile py-spy    # Python CPU, GIL holders only
    .venv/bin/python bench/intake_cpu.py --profile perf      # kernel and C, with call graphs
    .venv/bin/python bench/intake_cpu.py --profile strace    # system call counts, 1 process

The set-up is ``bench_intake.Postroom``'s (relaying everything to smtp-sink, fsync on).
CPU is read from /proc for the master and every intake process (utime, stime), over the
time from the first connection to an empty queue; profiles go to ``--out``.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from bench_intake import Postroom

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *(int(p) for p in out.split())]


def cpu_ticks(pids: list[int]) -> dict[int, tuple[int, int]]:
    ticks = {}
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks[pid] = (int(fields[11]), int(fields[12]))  # utime, stime
    return ticks


def start_profiler(kind: str, pids: list[int], out: Path) -> subprocess.Popen[bytes]:
    if kind == "py-spy":
        cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pids[0]),
               "--subprocesses", "--gil", "--nonblocking", "-r", "200", "-f", "raw",
               "-o", str(out / "py-spy.txt")]
    elif kind == "perf":
        cmd = ["perf", "record", "-e", "cpu-clock", "-F", "999", "-g",
               "-o", str(out / "perf.data"), "-p", ",".join(map(str, pids[1:]))]
    else:  # strace: one intake process, as it slows the one it watches
        cmd = ["strace", "-f", "-c", "-o", str(out / "strace.txt"), "-p", str(pids[1])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return proc


def summarise_py_spy(path: Path, top: int = 40) -> None:
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        own[stack.split(";")[-1]] += int(count)
    print(f"py-spy: {total} samples; where the GIL holder was (own time):")
    for frame, count in own.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {frame}")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--rcpts", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="0: the server's default")
    ap.add_argument("--profile", choices=["py-spy", "perf", "strace"])
    ap.add_argument("--out", default="/tmp/postroom-intake-cpu")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with common.SmtpSink() as sink:
        server = Postroom(sink.port, args.workers)
        try:
            port = server.start()
            pids = tree(server.pid)
            profiler = start_profiler(args.profile, pids, out) if args.profile else None
            before = cpu_ticks(pids)
            res = common.run_smtp_source(port, args.messages, rcpts=args.rcpts)
            done = server.wait_queue_empty()
            after = cpu_ticks(pids)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait()
        finally:
            server.stop()
    e2e = args.messages / (done - res["t_start"]) if done else 0.0
    user = sum(after[p][0] - before[p][0] for p in pids) / TICK
    system = sum(after[p][1] - before[p][1] for p in pids) / TICK
    per = 1000 / args.messages
    print(f"{len(pids) - 1} intake processes, {args.rcpts} rcpt: accepted "
          f"{res['msgs_per_s']:.0f} msg/s, end to end {e2e:.0f} msg/s; server CPU per "
          f"message {user * per:.2f} ms user + {system * per:.2f} ms system = "
          f"{(user + system) * per:.2f} ms; load average {os.getloadavg()[0]:.2f}")
    if args.profile == "py-spy":
        summarise_py_spy(out / "py-spy.txt")
    elif args.profile:
        print(f"profile written under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
