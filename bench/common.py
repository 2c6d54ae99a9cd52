"""Shared helpers for the benchmarks in ``bench/`` (Python 3.11, standard library only).

Everything here measures from the outside, the way docs/performance.md describes:

* ``run_smtp_source`` drives Postfix's ``smtp-source`` load generator and returns its wall time
  and, through ``wait4``, its own CPU time;
* ``SmtpSink`` runs ``smtp-sink`` (accept and discard) as a context manager;
* ``ProcessSampler`` reads ``/proc`` to measure the CPU time and peak RSS of process trees
  (a server and all its children) over a window, plus the whole box's CPU from ``/proc/stat``,
  so that "foreign CPU" (box CPU minus everything we measured) can be reported;
* ``quiet_gate`` waits (bounded) until the box is quiet before a run;
* ``median_of`` / ``spread`` summarise runs; ``write_result`` writes ``bench/results/NAME.json``.

CPU percentages are "% of one core": 100 = one core, so at most 200 on the 2-core box.
Every loop here is bounded by a count or a deadline, and nothing binds off 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO = BENCH_DIR.parent

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
LOOPBACK = "127.0.0.1"

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
NCPU = os.cpu_count() or 1


# -- ports ----------------------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (bind port 0 on loopback, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listening(port: int, host: str = LOOPBACK) -> bool:
    """True when something LISTENs on host:port (read from /proc/net/tcp, no connection made)."""
    want = f"{socket.htonl(int.from_bytes(socket.inet_aton(host), 'big')):08X}:{port:04X}"
    any_addr = f"00000000:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) > 3 and parts[3] == "0A" and parts[1] in (want, any_addr):
                    return True
    except OSError:
        return False
    return False


def wait_listening(port: int, timeout: float = 10.0, host: str = LOOPBACK) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port, host):
            return True
        time.sleep(0.02)
    return listening(port, host)


# -- /proc readers --------------------------------------------------------------------------


@dataclass(slots=True)
class ProcStat:
    pid: int
    ppid: int
    comm: str
    cpu_ticks: int  # utime + stime
    child_ticks: int  # cutime + cstime (reaped children)
    rss_pages: int

    @property
    def rss(self) -> int:
        """Resident set size in bytes."""
        return self.rss_pages * PAGE_SIZE


def read_stat(pid: int | str) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    lpar, rpar = data.find(b"("), data.rfind(b")")
    rest = data[rpar + 2 :].split()
    # rest[0] is field 3 (state); see proc(5)
    try:
        return ProcStat(int(pid), int(rest[1]), data[lpar + 1 : rpar].decode(errors="replace"),
                        int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14]),
                        int(rest[21]))
    except (IndexError, ValueError):
        return None


def all_stats() -> dict[int, ProcStat]:
    out: dict[int, ProcStat] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(name)
            if st is not None:
                out[st.pid] = st
    return out


def tree_of(roots: Iterable[int], stats: Mapping[int, ProcStat]) -> list[ProcStat]:
    """The processes in ``stats`` that are one of ``roots`` or descend from one."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    out: list[ProcStat] = []
    todo = [r for r in roots if r in stats]
    seen: set[int] = set()
    while todo:  # bounded: each pid is visited once
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out.append(stats[pid])
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu_seconds(procs: Iterable[ProcStat]) -> float:
    """CPU of a tree: each live process's own time plus what it reaped from its children.

    A child that exits and is reaped by a process of the tree moves its time from its own
    counters to the parent's cutime/cstime, so the sum stays continuous across process churn
    (Postfix's smtpd/cleanup/smtp come and go)."""
    return sum(p.cpu_ticks + p.child_ticks for p in procs) / CLK_TCK


def self_cpu_seconds() -> float:
    """This process's own CPU (all threads), without reaped children."""
    t = os.times()
    return t.user + t.system


@dataclass(slots=True)
class BoxTimes:
    busy: float  # seconds, all CPUs: user+nice+system+irq+softirq
    idle: float  # idle + iowait
    steal: float

    @classmethod
    def read(cls) -> BoxTimes:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        fields += [0] * (10 - len(fields))
        user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
        return cls((user + nice + system + irq + softirq) / CLK_TCK,
                   (idle + iowait) / CLK_TCK, steal / CLK_TCK)


def box_busy_pct(seconds: float = 1.0) -> float:
    """Whole-box CPU over the next ``seconds``, in % of one core."""
    a, t0 = BoxTimes.read(), time.monotonic()
    time.sleep(seconds)
    b, t1 = BoxTimes.read(), time.monotonic()
    return 100.0 * (b.busy - a.busy) / (t1 - t0)


def quiet_gate(threshold_pct: float = 20.0, window_s: float = 1.0, timeout_s: float = 60.0,
               needed: int = 2) -> dict[str, Any]:
    """Wait until the box is quiet: ``needed`` consecutive windows under ``threshold_pct``
    (% of one core). Bounded by ``timeout_s``; returns what it saw, and ``passed``."""
    start = time.monotonic()
    seen: list[float] = []
    streak = 0
    while time.monotonic() - start < timeout_s:
        pct = box_busy_pct(window_s)
        seen.append(round(pct, 1))
        streak = streak + 1 if pct < threshold_pct else 0
        if streak >= needed:
            return {"passed": True, "waited_s": round(time.monotonic() - start, 2),
                    "busy_pct": seen[-needed:], "threshold_pct": threshold_pct}
    return {"passed": False, "waited_s": round(time.monotonic() - start, 2),
            "busy_pct": seen[-5:], "threshold_pct": threshold_pct}


# -- sampling process trees -----------------------------------------------------------------


@dataclass(slots=True)
class Snapshot:
    t: float
    cpu_s: dict[str, float]
    box: BoxTimes
    self_cpu_s: float
    others: dict[int, tuple[str, int]]  # pid -> (comm, cpu ticks) of processes outside the trees
    pss: dict[str, int] = field(default_factory=dict)  # bytes, when the mark asked for it


def pss_bytes(pids: Iterable[int]) -> int:
    """Sum of the proportional set size (shared pages split) of some processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            continue
    return total


@dataclass
class ProcessSampler:
    """CPU and peak RSS of one or more process trees over a window, plus box CPU.

    ``trees`` maps a name to a root pid (or several). Use as a context manager; a background
    thread samples RSS every ``interval`` seconds (peak of the tree's summed RSS and of its
    largest process). ``mark(label)`` records a CPU snapshot; ``window(a, b)`` gives the CPU%
    of every tree, of the box and of this harness between two marks ("start" and "stop" are
    taken on entry and exit)::

        with ProcessSampler({"server": pid}) as s:
            ...
            s.mark("accepted")
        s.window("start", "accepted")["cpu_pct"]["server"]
    """

    trees: Mapping[str, int | Sequence[int]]
    interval: float = 0.2
    marks: dict[str, Snapshot] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    peak_rss_process: dict[str, int] = field(default_factory=dict)
    peak_procs: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _roots(self, name: str) -> list[int]:
        r = self.trees[name]
        return [r] if isinstance(r, int) else list(r)

    def _sample(self, stats: dict[int, ProcStat] | None = None) -> dict[str, list[ProcStat]]:
        stats = stats if stats is not None else all_stats()
        out = {name: tree_of(self._roots(name), stats) for name in self.trees}
        for name, procs in out.items():
            rss = sum(p.rss_pages for p in procs) * PAGE_SIZE
            big = max((p.rss_pages for p in procs), default=0) * PAGE_SIZE
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)
            self.peak_rss_process[name] = max(self.peak_rss_process.get(name, 0), big)
            self.peak_procs[name] = max(self.peak_procs.get(name, 0), len(procs))
        self.samples += 1
        return out

    def mark(self, label: str, pss: bool = False) -> Snapshot:
        """Record CPU counters now (and the trees' PSS, which costs a read of smaps_rollup
        per process, when ``pss``)."""
        stats = all_stats()
        trees = self._sample(stats)
        inside = {p.pid for procs in trees.values() for p in procs} | {os.getpid()}
        snap = Snapshot(time.perf_counter(),
                        {n: tree_cpu_seconds(p) for n, p in trees.items()},
                        BoxTimes.read(), self_cpu_seconds(),
                        {pid: (st.comm, st.cpu_ticks) for pid, st in stats.items()
                         if pid not in inside})
        if pss:
            snap.pss = {n: pss_bytes(p.pid for p in procs) for n, procs in trees.items()}
        self.marks[label] = snap
        return snap

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> ProcessSampler:
        self.mark("start")
        self._thread = threading.Thread(target=self._run, name="ProcessSampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.mark("stop")

    def window(self, a: str = "start", b: str = "stop",
               extra_cpu_s: Mapping[str, float] | None = None) -> dict[str, Any]:
        """CPU between marks ``a`` and ``b``. ``extra_cpu_s`` adds CPU measured elsewhere
        (e.g. smtp-source's rusage) so it is not counted as foreign."""
        sa, sb = self.marks[a], self.marks[b]
        wall = sb.t - sa.t
        cpu_s = {n: sb.cpu_s[n] - sa.cpu_s.get(n, 0.0) for n in sb.cpu_s}
        for n, v in (extra_cpu_s or {}).items():
            cpu_s[n] = v
        harness = sb.self_cpu_s - sa.self_cpu_s
        box = sb.box.busy - sa.box.busy
        pct = (lambda s: round(100.0 * s / wall, 1)) if wall > 0 else (lambda s: 0.0)
        foreign = box - sum(cpu_s.values()) - harness
        return {
            "wall_s": round(wall, 4),
            "cpu_s": {n: round(v, 3) for n, v in cpu_s.items()},
            "cpu_pct": {n: pct(v) for n, v in cpu_s.items()},
            "harness_cpu_pct": pct(harness),
            "box_cpu_pct": pct(box),
            "steal_pct": pct(sb.box.steal - sa.box.steal),
            "foreign_cpu_pct": pct(foreign),
            "top_foreign": top_foreign(sa, sb, wall),
        }

    def pss_mb(self, label: str) -> dict[str, float]:
        return {n: round(v / (1024 * 1024), 1) for n, v in self.marks[label].pss.items()}

    def rss(self) -> dict[str, dict[str, float]]:
        mb = 1024 * 1024
        return {n: {"peak_rss_sum_mb": round(self.peak_rss.get(n, 0) / mb, 1),
                    "peak_rss_largest_process_mb": round(self.peak_rss_process.get(n, 0) / mb, 1),
                    "peak_processes": self.peak_procs.get(n, 0)}
                for n in self.trees}


def top_foreign(a: Snapshot, b: Snapshot, wall: float, n: int = 5) -> list[dict[str, Any]]:
    """The processes outside the measured trees that used the most CPU between two marks
    (kernel threads included; softirq time is not attributed to any process)."""
    if wall <= 0:
        return []
    used: dict[str, int] = {}
    for pid, (comm, ticks) in b.others.items():
        prev = a.others.get(pid)
        # a kworker's comm names its current work queue, so match on the pid alone
        delta = ticks - (prev[1] if prev and prev[1] <= ticks else 0)
        if delta > 0:
            name = comm.split("-", 1)[0] if comm.startswith("kworker/") else comm
            used[name] = used.get(name, 0) + delta
    top = sorted(used.items(), key=lambda kv: -kv[1])[:n]
    return [{"comm": c, "cpu_pct": round(100.0 * t / CLK_TCK / wall, 1)} for c, t in top]


# -- smtp-sink and smtp-source --------------------------------------------------------------


def _stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Stop one process we started: SIGTERM, wait, then SIGKILL (by pid, never by name)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=timeout)


class SmtpSink:
    """``smtp-sink -c 127.0.0.1:PORT 1024`` (accept and discard) as a context manager.

    ``messages()`` reads the sink's running counter (messages completed with "."), so a
    benchmark can check that every message arrived."""

    def __init__(self, port: int | None = None, backlog: int = 1024,
                 user: str = "postfix", extra_args: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.backlog = backlog
        self.user = user
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "sink not started"
        return self.proc.pid

    @property
    def command(self) -> list[str]:
        cmd = [SMTP_SINK]
        if os.geteuid() == 0:
            cmd += ["-u", self.user]  # smtp-sink refuses to run as root without -u
        return [*cmd, "-c", *self.extra_args, f"{LOOPBACK}:{self.port}", str(self.backlog)]

    def start(self) -> SmtpSink:
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        if not wait_listening(self.port, timeout=10):
            self.stop()
            raise RuntimeError(f"smtp-sink did not listen on {LOOPBACK}:{self.port}")
        return self

    def messages(self) -> int:
        """Messages the sink has received so far (the last "mesg=N" counter it printed)."""
        if self._out is None:
            return 0
        self._out.seek(0, os.SEEK_END)
        size = self._out.tell()
        self._out.seek(max(0, size - 4096))
        tail = self._out.read().decode(errors="replace")
        i = tail.rfind("mesg=")
        if i < 0:
            return 0
        digits = ""
        for ch in tail[i + 5 : i + 25]:
            if not ch.isdigit():
                break
            digits += ch
        return int(digits or 0)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc)
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def smtp_source_command(port: int, messages: int, sessions: int = 20, size: int = 4096,
                        rcpts: int = 1, reuse: bool = False, sender: str = "a@example.test",
                        recipient: str = "b@example.test", host: str = LOOPBACK) -> list[str]:
    cmd = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size)]
    if rcpts != 1:
        cmd += ["-r", str(rcpts)]
    if reuse:
        cmd.append("-d")
    return [*cmd, "-f", sender, "-t", recipient, f"{host}:{port}"]


def run_smtp_source(port: int, messages: int, sessions: int = 20, size: int = 4096,
                    rcpts: int = 1, reuse: bool = False, *, timeout: float = 600.0,
                    check: bool = True, **kw: str) -> dict[str, Any]:
    """Run smtp-source once against 127.0.0.1:PORT. Without ``reuse`` smtp-source opens a new
    TCP connection per message (as in benchmarks.md). Returns wall seconds, msg/s (every
    message got its 250 when smtp-source exits 0) and smtp-source's own CPU (from wait4)."""
    cmd = smtp_source_command(port, messages, sessions, size, rcpts, reuse, **kw)
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        returncode, usage = _wait_rusage(cmd, err, err, timeout)
        t1 = time.perf_counter()
        err.seek(0)
        errors = err.read().decode(errors="replace")[-2000:]
    wall = t1 - t0
    cpu = usage.ru_utime + usage.ru_stime
    result = {
        "command": " ".join(cmd),
        "messages": messages, "sessions": sessions, "size": size, "rcpts": rcpts,
        "reuse": reuse, "rc": returncode,
        "t_start": t0, "t_end": t1,
        "wall": round(wall, 4),
        "msgs_per_s": round(messages / wall, 1) if wall > 0 else 0.0,
        "source_cpu_s": round(cpu, 3),
        "source_cpu_pct": round(100.0 * cpu / wall, 1) if wall > 0 else 0.0,
        "stderr": errors.strip(),
    }
    if check and returncode != 0:
        raise RuntimeError(f"smtp-source failed (exit {returncode}): {errors.strip()}")
    return result


def run_measured(cmd: Sequence[str], *, timeout: float = 600.0,
                 env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run a command to completion and measure it from outside: wall time, its CPU (user+sys
    of it and its reaped children, from wait4), the box's CPU over the same window and the
    foreign CPU (box minus the command and this harness), all in % of one core."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        box0, self0 = BoxTimes.read(), self_cpu_seconds()
        t0 = time.perf_counter()
        returncode, usage = _wait_rusage(cmd, out, err, timeout, env)
        wall = time.perf_counter() - t0
        box1, self1 = BoxTimes.read(), self_cpu_seconds()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    box = box1.busy - box0.busy
    return {"rc": returncode, "wall_s": wall, "cpu_s": cpu,
            "cpu_pct": round(100 * cpu / wall, 1) if wall > 0 else 0.0,
            "box_cpu_pct": round(100 * box / wall, 1) if wall > 0 else 0.0,
            "foreign_cpu_pct": round(100 * (box - cpu - (self1 - self0)) / wall, 1)
            if wall > 0 else 0.0,
            "stdout": stdout, "stderr": stderr}


def _wait_rusage(cmd: Sequence[str], stdout: Any, stderr: Any, timeout: float,
                 env: Mapping[str, str] | None = None) -> tuple[int, Any]:
    """Run ``cmd`` to completion (killed after ``timeout``); its exit code and rusage."""
    proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            env=dict(env) if env is not None else None)
    timer = threading.Timer(timeout, lambda: _kill_quietly(proc.pid))
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- summaries and results ------------------------------------------------------------------


def median_of(runs: Sequence[Any]) -> Any:
    """Median of numbers, or of every numeric key of a list of dicts (keys in the first)."""
    if not runs:
        return None
    if isinstance(runs[0], Mapping):
        out: dict[str, Any] = {}
        for key, value in runs[0].items():
            if isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                vals = [r[key] for r in runs if isinstance(r.get(key), int | float)]
                out[key] = statistics.median(vals)
        return out
    return statistics.median(runs)


def spread(values: Sequence[float]) -> dict[str, float]:
    """median, min, max of some numbers (rounded for reports)."""
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values)}


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": NCPU, "kernel": platform.release(),
                            "python": platform.python_version(), "node": platform.node()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        info["git"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def fsync_cost(directory: Path, count: int = 200) -> dict[str, float]:
    """What write(4 KiB) + fsync costs on the file system of ``directory``: the figure every
    result is read against (a disk whose fsync is twice as slow changes the ratios)."""
    buf = os.urandom(4096)
    times = []
    fd, name = tempfile.mkstemp(prefix="fsync-probe-", dir=directory)
    try:
        for _ in range(count):
            os.write(fd, buf)
            t = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(name)
    times.sort()
    return {"p50_ms": round(times[len(times) // 2] * 1000, 3),
            "p99_ms": round(times[int(len(times) * 0.99)] * 1000, 3), "n": count,
            "directory": str(directory)}


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    """Write ``bench/results/NAME.json`` (with the date, the machine and its fsync cost now,
    unless the benchmark measured that itself) and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    doc = {"name": name, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": machine_info(), **data}
    doc.setdefault("fsync", fsync_cost(Path(tempfile.gettempdir())))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain-text (Markdown) table."""
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
