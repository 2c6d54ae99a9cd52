#!/usr/bin/env python3
"""The list engine (issue 11) against GNU Mailman 3.3, in the same run.

    .venv/bin/python bench/bench_lists.py [--runs 3] [--mailman-runs 1]
                                           [--mailman-members 10000] [--skip-mailman]
                                           [--fanout-only] [--result NAME]

(``--fanout-only``: only the fan-out runs and the big list's memory run, for measuring a
change to fan-out on a shared machine; the memory run also gives the largest process's
peak RSS, which is the process that fanned out.)

Both servers, each with its own ``/usr/sbin/smtp-sink -v`` on 127.0.0.1 (the RCPT and MAIL
lines of its log are counted), are started and stopped here:

- postroom: a site in a temp directory (``postroom serve``, a mailertable sending the
  members' domain to the sink, ``[web] base_url`` set so that every copy carries the
  member's RFC 8058 one-click token, VERP sender per member);
- Mailman 3.3 from PyPI in its own venv (``--mailman-venv``, default /tmp/mm3-venv, kept
  between runs), var dir in a temp directory, the tuned config of benchmarks.md Part 2
  (``max_recipients: 1000``, ``verp_personalized_deliveries: yes``, 0.1 s polling), ports
  chosen free by binding port 0 first, lists set up with ``mailman shell -r``.

Measured:

1. fan-out, from the 250 for the post to the last copy at the sink: 1,000 and 10,000
   members, personalised (postroom: VERP + token; Mailman: personalize=individual + VERP),
   the two servers alternating run by run; Mailman's bulk mode (personalize=none, batches
   of 1,000 recipients) as a second reference row;
2. adding 10,000 members: ``postroom members add LIST --file F`` (wall, median of
   ``--runs`` fresh lists) against ``mailman addmembers -W`` (the fill of Mailman's fan-out
   lists, timed; with ``--mailman-members 1000`` only the 1,000 list exists and its figures
   for 10,000 are extrapolated, and labelled so);
3. ``postroom members sync`` of 50,000 members (from empty, then 5,000 changed);
4. the first page of a 100,000-member listing: ``postroom.lists.listing.page_members`` in
   process (median of 20) and ``postroom members list`` wall (median of 3);
5. memory: RSS (summed, sampled every 0.2 s) and PSS (``/proc/PID/smaps_rollup``, every
   0.5 s) of the postroom server tree before and during a 100,000-member fan-out, and of
   Mailman's process tree idle and during its runs.

Every run records the box's CPU and the foreign CPU (``common.ProcessSampler``; both server
trees and both sinks are measured, so foreign is only what is not ours). The result file
also has the machine, the fsync p50 of the file system the sites are on, the quiet gates
and the command line: bench/results/lists.json (``lists_partial.json`` with
``--skip-mailman`` or smaller sizes). docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

ROOT = Path(__file__).resolve().parent.parent
POSTROOM = str(ROOT / ".venv/bin/postroom")
LIST_DOMAIN = "lists.example.test"
MEMBER_DOMAIN = "members.example.test"
CHECK_DOMAIN = "check.example.test"
WEB_BASE = "https://lists.example.test"
GOALS = {"fanout_10000_personalised_s": 2.0, "add_10000_s": 1.0, "sync_50000_s": 2.0,
         "first_page_100000_s": 0.050, "fanout_100000_rss_growth_mb": 50.0}
MB = 1024 * 1024

PROFILE = """\
[site]
hostname = "mail.lists.example.test"
domains = ["lists.example.test"]

[maps]
mailertable = ["maps/mailertable"]

[networks]
relay = ["127.0.0.0/8"]

[[listeners]]
name = "mx"
role = "mx"
address = "127.0.0.1"
port = {port}

[dns]
nameservers = ["127.0.0.1:9"]   # never asked (dmarc_mitigation = none on the lists)

[web]
base_url = "{web_base}"           # the web itself is not started: only the links in mail
"""

MAILMAN_CFG = """\
[mailman]
site_owner: owner@lists.example.test
layout: local

[paths.local]
var_dir: {var}

[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///{var}/data/mailman.db

[mta]
incoming: mailman.mta.null.NullMTA
outgoing: mailman.mta.deliver.deliver
smtp_host: 127.0.0.1
smtp_port: {smtp_port}
lmtp_host: 127.0.0.1
lmtp_port: {lmtp_port}
# the tuned configuration of benchmarks.md Part 2
max_recipients: 1000
max_sessions_per_connection: 0
max_delivery_threads: 0
verp_personalized_deliveries: yes
verp_delivery_interval: 0

[webservice]
hostname: 127.0.0.1
port: {rest_port}
admin_user: restadmin
admin_pass: restpass

[archiver.mhonarc]
enable: no
[archiver.mail_archive]
enable: no
[archiver.prototype]
enable: no

[logging.smtp]
level: info

[runner.in]
sleep_time: 0.1s
[runner.pipeline]
sleep_time: 0.1s
[runner.out]
sleep_time: 0.1s
"""

MMSETUP = '''\
"""List settings for the benchmark (benchmarks.md Part 2, appendix B), run by
``mailman shell -l LIST -r mmsetup.FUNCTION``."""

from mailman.interfaces.archiver import ArchivePolicy
from mailman.interfaces.mailinglist import Personalization


def base(mlist):
    mlist.send_welcome_message = False
    mlist.send_goodbye_message = False
    mlist.admin_notify_mchanges = False
    mlist.digests_enabled = False
    mlist.digest_send_periodic = False
    mlist.archive_policy = ArchivePolicy.never
    mlist.personalize = Personalization.none


def bulk(mlist):
    base(mlist)


def personal(mlist):
    base(mlist)
    mlist.personalize = Personalization.individual
'''


def log(*a: object) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def members_file(path: Path, n: int, start: int = 0) -> Path:
    """``Member 00042 <m00042@members.example.test>``, one a line (benchmarks.md)."""
    path.write_text("".join(f"Member {i:05d} <m{i:05d}@{MEMBER_DOMAIN}>\n"
                            for i in range(start, start + n)))
    return path


def post_bytes(list_address: str, serial: int) -> bytes:
    """The same ~4 KB plain-text post for both servers (the poster is member 0)."""
    body = "A line of an ordinary announcement to the department, long enough.\r\n" * 60
    return (f"From: Member 00000 <m00000@{MEMBER_DOMAIN}>\r\nTo: {list_address}\r\n"
            f"Subject: benchmark post {serial}\r\n"
            f"Message-ID: <bench-{serial}-{os.getpid()}@{MEMBER_DOMAIN}>\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            + body).encode()


# -- the sink and its -v log --------------------------------------------------------------


class LoggingSink(common.SmtpSink):
    """``smtp-sink -v -c``, its log in a file whose RCPT/MAIL/"." lines are counted."""

    def __init__(self, logfile: Path) -> None:
        super().__init__(extra_args=["-v"])
        self.logfile = logfile
        self._pos = 0
        self._tail = b""
        self.rcpts = self.mails = self.done = self.verp = 0

    def start(self) -> LoggingSink:
        self._out = self.logfile.open("wb")
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        if not common.wait_listening(self.port, timeout=10):
            self.stop()
            raise RuntimeError(f"smtp-sink did not listen on port {self.port}")
        return self

    def poll(self) -> None:
        """Count what the log gained since the last call (whole lines only)."""
        with self.logfile.open("rb") as f:
            f.seek(self._pos)
            data = f.read()
        if not data:
            return
        self._pos += len(data)
        data = self._tail + data
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        chunk = data[:cut].upper()
        self.rcpts += chunk.count(b": RCPT TO:")
        self.mails += chunk.count(b": MAIL FROM:")
        self.verp += chunk.count(b"-BOUNCES+")
        self.done += chunk.count(b"SMTP-SINK: .\n")

    def counts(self) -> dict[str, int]:
        self.poll()
        return {"rcpts": self.rcpts, "transactions": self.done, "verp_senders": self.verp}

    def wait_for(self, rcpts: int, t0: float, timeout: float,
                 tick: Callable[[], None] | None = None) -> dict[str, Any]:
        """Until ``rcpts`` more RCPTs than now were logged and every transaction begun was
        finished ("."): first-RCPT and last-copy times after ``t0``."""
        self.poll()
        base_r, base_m, base_d, base_v = self.rcpts, self.mails, self.done, self.verp
        first = None
        last_tick = 0.0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            now = time.perf_counter()
            if first is None and self.rcpts > base_r:
                first = now - t0
            if self.rcpts - base_r >= rcpts and self.done - base_d >= self.mails - base_m:
                break
            if tick is not None and now - last_tick >= 0.5:
                tick()
                last_tick = time.perf_counter()
            time.sleep(0.005)
        else:
            now = time.perf_counter()
        return {"all_s": round(now - t0, 3), "first_rcpt_s": round(first or 0.0, 3),
                "rcpts": self.rcpts - base_r, "transactions": self.done - base_d,
                "verp_senders": self.verp - base_v,
                "complete": self.rcpts - base_r >= rcpts}


# -- postroom ------------------------------------------------------------------------------


class Postroom:
    def __init__(self, home: Path, sink_port: int, check_port: int) -> None:
        self.home = home
        self.port = common.free_port()
        (home / "maps").mkdir(parents=True)
        (home / "postroom.toml").write_text(PROFILE.format(port=self.port, web_base=WEB_BASE))
        (home / "maps/mailertable").write_text(
            f"{MEMBER_DOMAIN} esmtp:[127.0.0.1]:{sink_port}\n"
            f"{CHECK_DOMAIN} esmtp:[127.0.0.1]:{check_port}\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self._err: Any = None

    def cli(self, *args: str, check: bool = True) -> dict[str, Any]:
        cmd = [POSTROOM, *args, "--site", str(self.home)]
        res = common.run_measured(cmd, timeout=600)
        if check and res["rc"] != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {res['rc']}: {res['stderr'][-2000:]}")
        res["command"] = " ".join(["postroom", *args])
        return res

    def new_list(self, name: str) -> str:
        address = f"{name}@{LIST_DOMAIN}"
        self.cli("lists", "create", address)
        # open: nobody's post is held; none: no DMARC lookup, as Mailman's default
        # (no_mitigation); the resolver here is deliberately unreachable
        self.cli("lists", "set", address, "posting_policy=open", "dmarc_mitigation=none")
        return address

    def start(self) -> None:
        self._err = (self.home / "serve.err").open("w")
        self.proc = subprocess.Popen([POSTROOM, "serve", "--site", str(self.home)],
                                     stdout=subprocess.DEVNULL, stderr=self._err,
                                     start_new_session=True)
        if not common.wait_listening(self.port, timeout=30):
            raise RuntimeError("postroom serve did not listen")
        time.sleep(1.5)  # the intake processes

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def post(self, list_address: str, serial: int) -> tuple[float, float]:
        """Send a post; (time before MAIL, time of the 250 after DATA)."""
        msg = post_bytes(list_address, serial)
        with smtplib.SMTP("127.0.0.1", self.port, timeout=120) as c:
            c.ehlo("bench.example.test")
            t0 = time.perf_counter()
            c.sendmail(f"m00000@{MEMBER_DOMAIN}", [list_address], msg)
            return t0, time.perf_counter()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # the group we started
                self.proc.wait(10)
        if self._err is not None:
            self._err.close()
            self._err = None


# -- Mailman -------------------------------------------------------------------------------


class Mailman:
    def __init__(self, venv: Path, home: Path, sink_port: int) -> None:
        self.venv = venv
        self.home = home
        self.var = home / "var"
        self.lmtp_port = common.free_port()
        self.rest_port = common.free_port()
        self.cfg = home / "mailman.cfg"
        home.mkdir(parents=True)
        self.cfg.write_text(MAILMAN_CFG.format(var=self.var, smtp_port=sink_port,
                                               lmtp_port=self.lmtp_port,
                                               rest_port=self.rest_port))
        (home / "tools").mkdir()
        (home / "tools/mmsetup.py").write_text(MMSETUP)
        self.master: int | None = None
        self.tree: list[int] = []

    @staticmethod
    def install(venv: Path) -> dict[str, Any]:
        """Mailman 3.3 from PyPI into ``venv`` unless it is there already."""
        mailman = venv / "bin/mailman"
        t = time.perf_counter()
        if not mailman.exists():
            log(f"installing mailman 3.3 into {venv}")
            subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin/pip"), "install", "-q", "--upgrade", "pip"],
                           check=True)
            subprocess.run([str(venv / "bin/pip"), "install", "-q", "mailman>=3.3,<3.4"],
                           check=True)
        version = subprocess.run([str(venv / "bin/python"), "-c",
                                  "import importlib.metadata as m; print(m.version('mailman'))"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        return {"venv": str(venv), "version": version,
                "install_s": round(time.perf_counter() - t, 1)}

    def argv(self, *args: str) -> list[str]:
        cmd = [str(self.venv / "bin/mailman"), "-C", str(self.cfg)]
        if os.geteuid() == 0:
            cmd.append("--run-as-root")  # mailman refuses to run as root otherwise
        return [*cmd, *args]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.home / "tools")}

    def run(self, *args: str) -> dict[str, Any]:
        res = common.run_measured(self.argv(*args), timeout=3600, env=self.env())
        if res["rc"] != 0:
            raise RuntimeError(f"mailman {' '.join(args)}: exit {res['rc']}: "
                               f"{res['stderr'][-2000:]}")
        res["command"] = "mailman " + " ".join(args)
        return res

    def start(self) -> float:
        t = time.perf_counter()
        self.run("start")
        if not common.wait_listening(self.lmtp_port, timeout=120):
            raise RuntimeError("mailman's LMTP runner did not listen")
        if not common.wait_listening(self.rest_port, timeout=60):
            raise RuntimeError("mailman's REST runner did not listen")
        took = time.perf_counter() - t
        self.master = int((self.var / "master.pid").read_text().split()[0])
        return took

    def create_list(self, name: str, mode: str) -> str:
        address = f"{name}@{LIST_DOMAIN}"
        self.run("create", "-N", "-q", address)
        self.settings(address, mode)
        return address

    def settings(self, address: str, mode: str) -> None:
        self.run("shell", "-l", address, "-r", f"mmsetup.{mode}")

    def post(self, list_address: str, serial: int) -> tuple[float, float]:
        msg = post_bytes(list_address, serial)
        with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=120) as c:
            c.ehlo("bench.example.test")
            t0 = time.perf_counter()
            c.sendmail(f"m00000@{MEMBER_DOMAIN}", [list_address], msg)
            return t0, time.perf_counter()

    def stop(self) -> None:
        if self.master is None:
            return
        pids = [p.pid for p in common.tree_of([self.master], common.all_stats())]
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self.run("stop")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
            time.sleep(0.2)
        for pid in pids:  # only the processes of the Mailman we started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.master = None


# -- measuring -----------------------------------------------------------------------------


def tree_memory(root: int) -> dict[str, float]:
    procs = common.tree_of([root], common.all_stats())
    return {"rss_mb": round(sum(p.rss for p in procs) / MB, 1),
            "pss_mb": round(common.pss_bytes(p.pid for p in procs) / MB, 1),
            "processes": len(procs)}


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.serial = 0
        self.trees: dict[str, int] = {}
        self.gates: list[dict[str, Any]] = []

    def gate(self, label: str) -> dict[str, Any]:
        g = common.quiet_gate(threshold_pct=25.0, timeout_s=self.args.gate_timeout)
        g["before"] = label
        self.gates.append(g)
        if not g["passed"]:
            log(f"  quiet gate not passed before {label}: {g['busy_pct']}")
        return g

    def fan_out(self, who: str, server: Postroom | Mailman, sink: LoggingSink,
                list_address: str, members: int, mode: str, timeout: float,
                pss_root: int | None = None) -> dict[str, Any]:
        """One post; from its 250 until every copy is at the sink."""
        gate = self.gate(f"{who} {mode} {members}")
        self.serial += 1
        peak_pss = [0.0]

        def tick() -> None:
            if pss_root is not None:
                procs = common.tree_of([pss_root], common.all_stats())
                peak_pss[0] = max(peak_pss[0], common.pss_bytes(p.pid for p in procs) / MB)

        with common.ProcessSampler(self.trees) as sampler:
            t_mail, t_250 = server.post(list_address, self.serial)
            got = sink.wait_for(members, t_250, timeout, tick)
        win = sampler.window()
        rss = sampler.rss()
        out = {"server": who, "mode": mode, "members": members, **got,
               "accept_s": round(t_250 - t_mail, 3),
               "rcpts_per_s": round(got["rcpts"] / got["all_s"], 1) if got["all_s"] > 0 else 0,
               "server_cpu_s": win["cpu_s"].get(who),
               "cpu_s": win["cpu_s"], "box_cpu_pct": win["box_cpu_pct"],
               "foreign_cpu_pct": win["foreign_cpu_pct"], "steal_pct": win["steal_pct"],
               "top_foreign": win["top_foreign"],
               "peak_rss_mb": rss.get(who, {}).get("peak_rss_sum_mb"),
               "peak_rss_largest_process_mb":
                   rss.get(who, {}).get("peak_rss_largest_process_mb"),
               "quiet_gate_passed": gate["passed"]}
        if pss_root is not None:
            out["peak_pss_mb"] = round(peak_pss[0], 1)
        ok = "" if got["complete"] else "  INCOMPLETE"
        log(f"  {who:8} {mode:8} {members:>6}: {got['all_s']:8.3f} s "
            f"(first RCPT {got['first_rcpt_s']:.3f} s, {got['rcpts']} RCPTs in "
            f"{got['transactions']} transactions, {got['verp_senders']} VERP senders; "
            f"foreign CPU {win['foreign_cpu_pct']} %){ok}")
        return out


def median_row(runs: Sequence[dict[str, Any]], key: str = "all_s") -> dict[str, Any]:
    vals = [r[key] for r in runs]
    return {"median": round(statistics.median(vals), 3), "runs": vals,
            "foreign_cpu_pct": [r["foreign_cpu_pct"] for r in runs]}


def check_copy(pr: Postroom, tmp: Path) -> dict[str, Any]:
    """A post to a 2-member list whose copies smtp-sink dumps: the VERP sender and the
    one-click headers with the member's token are in every copy."""
    dump = tmp / "dump"
    dump.mkdir()
    os.chmod(tmp, 0o755)  # smtp-sink runs as postfix (-u) when we are root
    os.chmod(dump, 0o777)
    sink = common.SmtpSink(port=_check_port(pr), extra_args=["-d", str(dump) + "/%H%M%S."])
    sink.start()
    try:
        address = pr.new_list("check")
        pr.cli("members", "add", address, f"a@{CHECK_DOMAIN}", f"b@{CHECK_DOMAIN}")
        pr.post(address, 0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(dump.iterdir())) < 2:
            time.sleep(0.05)
        time.sleep(0.2)
        copies = [p.read_bytes() for p in sorted(dump.iterdir())]
    finally:
        sink.stop()
    return {"copies": len(copies), "ok": len(copies) == 2,
            "verp_sender": all(b"check-bounces+" in c for c in copies),
            "one_click_post": all(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in c
                                  for c in copies),
            "token_link": all(b"token=" in c and WEB_BASE.encode() in c for c in copies)}


def _check_port(pr: Postroom) -> int:
    for line in (pr.home / "maps/mailertable").read_text().splitlines():
        if line.startswith(CHECK_DOMAIN):
            return int(line.rsplit(":", 1)[1])
    raise RuntimeError("no check route")


def page_in_process(home: Path, name: str, n: int = 20) -> dict[str, Any]:
    from postroom import site as site_mod
    from postroom.lists import listing
    from postroom.store.db import dispose_engines

    site = site_mod.load(home)
    listing.page_members(site, name, LIST_DOMAIN, 1, 100)  # the pool's first connection
    times = []
    for _ in range(n):
        t = time.perf_counter()
        page = listing.page_members(site, name, LIST_DOMAIN, 1, 100)
        times.append(time.perf_counter() - t)
    dispose_engines()
    return {"median_s": round(statistics.median(times), 5), "min_s": round(min(times), 5),
            "max_s": round(max(times), 5), "n": n, "total": page.total,
            "rows": len(page.members)}


# -- the run -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="postroom runs per figure (median)")
    ap.add_argument("--mailman-runs", type=int, default=1,
                    help="runs of Mailman's 10,000-member personalised fan-out (~110 s each)")
    ap.add_argument("--mailman-members", type=int, default=10_000,
                    help="Mailman's largest list: 10000 (its fill takes ~2 min and is the "
                    "add-members figure) or 1000 (10,000 figures extrapolated x10)")
    ap.add_argument("--skip-mailman", action="store_true")
    ap.add_argument("--mailman-venv", type=Path, default=Path("/tmp/mm3-venv"))
    ap.add_argument("--sync", type=int, default=50_000)
    ap.add_argument("--big", type=int, default=100_000,
                    help="members of the listing and memory fan-out list")
    ap.add_argument("--sizes", default="1000,10000", help="fan-out list sizes (smoke tests)")
    ap.add_argument("--gate-timeout", type=float, default=60.0)
    ap.add_argument("--fanout-only", action="store_true",
                    help="only the fan-out figures and the memory run (no add, sync or "
                    "listing figures): for measuring a fan-out change on a shared machine")
    ap.add_argument("--result", default="",
                    help="name of the result file in bench/results (default: lists, or "
                    "lists_partial for a partial run)")
    args = ap.parse_args(argv)

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tmp = Path(tempfile.mkdtemp(prefix="postroom-bench-lists-"))
    results: dict[str, Any] = {"argv": sys.argv, "command": " ".join(sys.argv),
                               "started_utc": started, "goals": GOALS}
    results["fsync"] = common.fsync_cost(tmp)
    log(f"fsync (4 KiB write + fsync) p50 {results['fsync']['p50_ms']} ms in {tmp}")
    sizes = [int(x) for x in args.sizes.split(",")]
    mm_sizes = [] if args.skip_mailman else [s for s in sizes if s <= args.mailman_members]

    pr_sink = LoggingSink(tmp / "sink-postroom.log")
    mm_sink = LoggingSink(tmp / "sink-mailman.log")
    check_port = common.free_port()
    pr = Postroom(tmp / "postroom", pr_sink.port, check_port)
    mm: Mailman | None = None
    bench = Bench(args, tmp)
    try:
        pr_sink.start()
        bench.trees = {"postroom": 0, "sink_postroom": pr_sink.pid}
        pr.cli("db", "upgrade")
        pr.start()
        bench.trees["postroom"] = pr.pid
        results["postroom_idle_cold"] = tree_memory(pr.pid)
        results["one_click_check"] = check_copy(pr, tmp)
        log(f"postroom copy check: {results['one_click_check']}")
        if mm_sizes:
            results["mailman_install"] = Mailman.install(args.mailman_venv)
            mm_sink.start()
            bench.trees["sink_mailman"] = mm_sink.pid
            mm = Mailman(args.mailman_venv, tmp / "mailman", mm_sink.port)
            results["mailman_start_s"] = round(mm.start(), 2)
            assert mm.master is not None
            bench.trees["mailman"] = mm.master
            time.sleep(5)
            results["mailman_idle"] = tree_memory(mm.master)
            log(f"mailman {results['mailman_install']['version']} started in "
                f"{results['mailman_start_s']} s; idle {results['mailman_idle']}")

        # -- the fan-out lists, and adding members -----------------------------------------
        pr_lists: dict[int, str] = {}
        mm_lists: dict[int, str] = {}
        fills: dict[str, Any] = {"postroom": {}, "mailman": {}}
        for n in sizes:
            f = members_file(tmp / f"members_{n}.txt", n)
            pr_lists[n] = pr.new_list(f"fan{n}")
            bench.gate(f"postroom add {n}")
            res = pr.cli("members", "add", pr_lists[n], "--file", str(f))
            fills["postroom"][n] = _cli_row(res)
            log(f"  postroom members add {n}: {res['wall_s']:.3f} s")
            if n in mm_sizes:
                assert mm is not None
                mm_lists[n] = mm.create_list(f"test{n}", "personal")
                bench.gate(f"mailman addmembers {n}")
                res = mm.run("addmembers", "-W", str(f), mm_lists[n])
                fills["mailman"][n] = _cli_row(res)
                log(f"  mailman addmembers -W {n}: {res['wall_s']:.1f} s "
                    f"(CPU {res['cpu_s']:.1f} s, foreign {res['foreign_cpu_pct']} %)")
        results["fills"] = fills
        if mm is not None:
            results["mailman_idle_after_fill"] = tree_memory(mm.master or 0)
        results["postroom_idle_before_fanout"] = tree_memory(pr.pid)

        # -- fan-out: personalised, alternating --------------------------------------------
        fan: dict[str, dict[int, list[dict[str, Any]]]] = {
            "postroom": {n: [] for n in sizes}, "mailman": {n: [] for n in mm_sizes},
            "mailman_bulk": {n: [] for n in mm_sizes}}
        for n in sizes:
            timeout = 60 + n * 0.01
            mm_runs = args.runs if n < 10_000 else args.mailman_runs
            for i in range(max(args.runs, mm_runs if n in mm_sizes else 0)):
                if i < args.runs:
                    fan["postroom"][n].append(bench.fan_out(
                        "postroom", pr, pr_sink, pr_lists[n], n, "personal", timeout))
                if n in mm_sizes and i < mm_runs:
                    assert mm is not None
                    fan["mailman"][n].append(bench.fan_out(
                        "mailman", mm, mm_sink, mm_lists[n], n, "personal", 60 + n * 0.05,
                        mm.master))
        for n in mm_sizes:  # Mailman's bulk mode on the same lists
            assert mm is not None
            mm.settings(mm_lists[n], "bulk")
            for _ in range(args.runs):
                fan["mailman_bulk"][n].append(bench.fan_out(
                    "mailman", mm, mm_sink, mm_lists[n], n, "bulk", 120, mm.master))
        results["fanout_runs"] = fan
        if mm is not None:
            results["mailman_after_runs"] = tree_memory(mm.master or 0)
            mm.stop()
            mm = None

        # -- postroom: add 10,000, sync 50,000, list 100,000 -------------------------------
        if not args.fanout_only:
            cli_figures(pr, bench, tmp, args, results)
        big_file = members_file(tmp / "members_big.txt", args.big)
        big = pr.new_list("big")
        bench.gate("postroom add big")
        results["add_big"] = _cli_row(pr.cli("members", "add", big, "--file", str(big_file)))
        if not args.fanout_only:
            listing_figures(pr, bench, big, args, results)

        # -- memory during a 100,000-member fan-out ----------------------------------------
        before = tree_memory(pr.pid)
        results["memory_fanout"] = {"before": before, "run": bench.fan_out(
            "postroom", pr, pr_sink, big, args.big, "personal", 120 + args.big * 0.01,
            pr.pid)}
        time.sleep(2)
        results["memory_fanout"]["after"] = tree_memory(pr.pid)
        run = results["memory_fanout"]["run"]
        results["memory_fanout"]["rss_growth_mb"] = round(run["peak_rss_mb"] - before["rss_mb"],
                                                          1)
        results["memory_fanout"]["pss_growth_mb"] = round(run["peak_pss_mb"] - before["pss_mb"],
                                                          1)
        log(f"  memory: before {before}, peak RSS {run['peak_rss_mb']} MB (largest process "
            f"{run['peak_rss_largest_process_mb']} MB), peak PSS {run['peak_pss_mb']} MB; "
            f"server CPU {run['server_cpu_s']} s")
    finally:
        if mm is not None:
            mm.stop()
        pr.stop()
        pr_sink.stop()
        mm_sink.stop()
        results["quiet_gates"] = bench.gates
        results["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        shutil.rmtree(tmp, ignore_errors=True)

    results["summary"] = summarise(results, args, mm_sizes)
    full = not args.skip_mailman and args.mailman_members == 10_000 and args.big == 100_000 \
        and args.sync == 50_000 and args.sizes == "1000,10000" and not args.fanout_only
    path = common.write_result(args.result or ("lists" if full else "lists_partial"), results)
    print(common.table(results["summary"]["rows"],
                       ["measure", "postroom", "Mailman 3", "Mailman / postroom", "goal",
                        "met"]))
    print(f"written to {path}")
    return 0


def cli_figures(pr: Postroom, bench: Bench, tmp: Path, args: argparse.Namespace,
                results: dict[str, Any]) -> None:
    """Adding 10,000 members and syncing ``--sync`` members, ``--runs`` times each."""
    results["cli_floor"] = _cli_row(_median_cli(
        [lambda: pr.cli("lists", "list") for _ in range(3)]))
    add_file = members_file(tmp / "add_10000.txt", 10_000)
    adds = []
    for i in range(args.runs):
        address = pr.new_list(f"add{i}")
        bench.gate("postroom add 10000")
        adds.append(_cli_row(pr.cli("members", "add", address, "--file", str(add_file))))
    results["add_10000"] = adds
    log(f"  postroom members add 10000: {[a['wall_s'] for a in adds]}")

    sync_file = members_file(tmp / "sync_initial.txt", args.sync)
    churn = tmp / "sync_churn.txt"  # 2,500 out, 2,500 in
    churn.write_text("".join(sync_file.read_text().splitlines(True)[2500:])
                     + members_file(tmp / "in.txt", 2500, 500_000).read_text())
    syncs: list[dict[str, Any]] = []
    for i in range(args.runs):
        address = pr.new_list(f"sync{i}")
        bench.gate("postroom sync")
        initial = _cli_row(pr.cli("members", "sync", "-q", address, str(sync_file)))
        bench.gate("postroom sync churn")
        changed = _cli_row(pr.cli("members", "sync", "-q", address, str(churn)))
        syncs.append({"initial": initial, "churn": changed,
                      "summary": changed.get("stdout_tail")})
    results["sync"] = syncs
    log(f"  postroom members sync {args.sync}: initial "
        f"{[s['initial']['wall_s'] for s in syncs]}, churn "
        f"{[s['churn']['wall_s'] for s in syncs]}")


def listing_figures(pr: Postroom, bench: Bench, big: str, args: argparse.Namespace,
                    results: dict[str, Any]) -> None:
    """The first page of the big list, in process and by the CLI."""
    bench.gate("page_members")
    results["first_page_in_process"] = page_in_process(pr.home, "big")
    lists = []
    for _ in range(args.runs):
        bench.gate("postroom members list")
        lists.append(_cli_row(pr.cli("members", "list", big)))
    results["first_page_cli"] = lists
    log(f"  first page of {args.big}: in process "
        f"{results['first_page_in_process']['median_s'] * 1000:.1f} ms, CLI "
        f"{[r['wall_s'] for r in lists]}")


def _cli_row(res: dict[str, Any]) -> dict[str, Any]:
    return {"command": res.get("command"), "wall_s": round(res["wall_s"], 3),
            "cpu_s": round(res["cpu_s"], 3), "foreign_cpu_pct": res["foreign_cpu_pct"],
            "stdout_tail": res.get("stdout", "").strip().splitlines()[-1:] or None}


def _median_cli(calls: Sequence[Callable[[], dict[str, Any]]]) -> dict[str, Any]:
    runs = [c() for c in calls]
    return sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]


def summarise(r: dict[str, Any], args: argparse.Namespace,
              mm_sizes: list[int]) -> dict[str, Any]:
    fan = r["fanout_runs"]
    rows: list[list[Any]] = []
    out: dict[str, Any] = {}

    def ratio(mm: float | None, pr: float) -> str:
        if not mm or not pr:
            return "-"
        return f"{mm / pr:.0f}x" if mm / pr >= 10 else f"{mm / pr:.2f}x"

    for n in fan["postroom"]:
        pr_med = median_row(fan["postroom"][n])
        out[f"fanout_{n}_postroom"] = pr_med
        mm_p = median_row(fan["mailman"][n]) if n in mm_sizes else None
        mm_b = median_row(fan["mailman_bulk"][n]) if n in mm_sizes else None
        out[f"fanout_{n}_mailman_personal"] = mm_p
        out[f"fanout_{n}_mailman_bulk"] = mm_b
        goal = GOALS["fanout_10000_personalised_s"] if n == 10_000 else None
        rows.append([f"fan-out {n:,} personalised (s, 250 -> last copy)",
                     f"{pr_med['median']:.2f} ({', '.join(f'{v:.2f}' for v in pr_med['runs'])})",
                     f"{mm_p['median']:.1f}" if mm_p else "-",
                     ratio(mm_p["median"] if mm_p else None, pr_med["median"]),
                     f"< {goal} s" if goal else "",
                     ("yes" if pr_med["median"] < goal else "NO") if goal else ""])
        rows.append([f"fan-out {n:,}: Mailman bulk (batches of 1,000, not personalised)",
                     "", f"{mm_b['median']:.2f}" if mm_b else "-",
                     ratio(mm_b["median"] if mm_b else None, pr_med["median"]), "", ""])
    if "add_10000" in r:  # not with --fanout-only
        adds = [a["wall_s"] for a in r["add_10000"]]
        add_med = statistics.median(adds)
        mm_fill = r["fills"]["mailman"]
        if 10_000 in mm_fill:
            mm_add, label = mm_fill[10_000]["wall_s"], f"{mm_fill[10_000]['wall_s']:.1f}"
        elif 1000 in mm_fill:
            mm_add = mm_fill[1000]["wall_s"] * 10
            label = f"~{mm_add:.0f} (extrapolated: 10 x {mm_fill[1000]['wall_s']:.1f} s for 1,000)"
        else:
            mm_add, label = None, "-"
        rows.append(["add 10,000 members (s, wall)", f"{add_med:.2f}", label,
                     ratio(mm_add, add_med), "< 1 s", "yes" if add_med < 1 else "NO"])
        sync_i = statistics.median(s["initial"]["wall_s"] for s in r["sync"])
        sync_c = statistics.median(s["churn"]["wall_s"] for s in r["sync"])
        rows.append([f"sync {args.sync:,} members from empty (s, wall)", f"{sync_i:.2f}", "", "",
                     "< 2 s", "yes" if sync_i < 2 else "NO"])
        rows.append([f"sync {args.sync:,}, 5,000 changed (s, wall)", f"{sync_c:.2f}", "", "",
                     "< 2 s", "yes" if sync_c < 2 else "NO"])
        page = r["first_page_in_process"]["median_s"]
        rows.append([f"first page of {args.big:,}: page_members (ms)", f"{page * 1000:.1f}", "",
                     "", "< 50 ms", "yes" if page < 0.05 else "NO"])
        cli = statistics.median(x["wall_s"] for x in r["first_page_cli"])
        rows.append([f"first page of {args.big:,}: `postroom members list` (s, wall)",
                     f"{cli:.2f} (CLI floor {r['cli_floor']['wall_s']:.2f})", "", "", "", ""])
    mem = r["memory_fanout"]
    partial = "" if mem["run"]["complete"] else \
        f", {mem['run']['rcpts']:,} copies in {mem['run']['all_s']:.0f} s: timed out"
    rows.append([f"server RSS growth during a {args.big:,} fan-out (MB{partial})",
                 f"{mem['rss_growth_mb']} (PSS {mem['pss_growth_mb']})", "", "", "< 50 MB",
                 "yes" if mem["rss_growth_mb"] < 50 else "NO"])
    if "mailman_idle" in r:
        mm_peak = max([x["peak_rss_mb"] or 0 for runs in (*fan["mailman"].values(),
                                                          *fan["mailman_bulk"].values())
                       for x in runs], default=0)
        mm_pss = max([x.get("peak_pss_mb") or 0 for runs in (*fan["mailman"].values(),
                                                             *fan["mailman_bulk"].values())
                      for x in runs], default=0)
        rows.append(["server tree RSS / PSS idle (MB)",
                     f"{mem['before']['rss_mb']} / {mem['before']['pss_mb']}",
                     f"{r['mailman_idle']['rss_mb']} / {r['mailman_idle']['pss_mb']}",
                     "", "", ""])
        rows.append(["server tree peak RSS / PSS during fan-out (MB)",
                     f"{mem['run']['peak_rss_mb']} / {mem['run']['peak_pss_mb']} "
                     f"({args.big:,} members)",
                     f"{mm_peak} / {mm_pss} ({max(mm_sizes):,} members)", "", "", ""])
    out["rows"] = rows
    return out


if __name__ == "__main__":
    sys.exit(main())
