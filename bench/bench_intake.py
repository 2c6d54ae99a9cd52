#!/usr/bin/env python3
"""postroom against Postfix, in the same run, with Postfix's own load tools.

    .venv/bin/python bench/bench_intake.py [--runs 3] [--messages 5000] [--skip-postfix]
        [--fsync-delay-ms 0 1]

For each server (postroom, then the Postfix reference of bench/postfix_reference.py), both
relaying everything to one ``smtp-sink`` on 127.0.0.1:

- accept: ``smtp-source -s 20 -m N -l 4096`` (a new connection per message) -> msg/s until
  every message got its 250 (the server fsyncs before each 250);
- e2e: msg/s until the server's queue is empty and the sink has every message;
- the same with ``-r 10`` (10 recipients per message).

``--fsync-delay-ms``: run the comparison again with that much added to every fsync in both
servers (``fsync_delay``: an LD_PRELOAD library; 0 is the machine's own disk). Each run
counts the fsyncs both servers made, so the result shows that both paid the delay.

``--sign rsa`` (or ``ed25519``, or both): postroom runs once more per load with a DKIM key
for the sender's domain, so every message it relays is signed (mail from ``networks.relay``
machines is ours); Postfix signs nothing. The table then shows both postroom ratios.

For postroom also: peak RSS of the server tree, RSS with 1,000 idle connections, and one
message with 10,000 recipients for one destination (time until all are handed over).
Results go to bench/results/intake.json; docs/performance.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import fsync_delay
from postfix_reference import PostfixReference

ROOT = Path(__file__).resolve().parent.parent
POSTROOM = str(ROOT / ".venv/bin/postroom")
SENDER_DOMAIN = "example.test"  # smtp-source's -f (bench/common.py)

PROFILE = """\
[site]
hostname = "bench.example.org"
domains = ["bench.example.org"]

[maps]
mailertable = ["maps/mailertable"]

[networks]
relay = ["127.0.0.0/8"]

[[listeners]]
name = "mx"
role = "mx"
address = "127.0.0.1"
port = {port}

[limits]
recipients = 20000

[queue]
run_interval = "1s"
concurrency = 40
destination_concurrency = 20

[dns]
nameservers = ["127.0.0.1:9"]   # never asked: every route is an IP literal

[smtp]
workers = {workers}
"""


# CPU taken by the hypervisor (steal, % of one core) above which a run is flagged
STEAL_WARN_PCT = 5.0


class Postroom:
    def __init__(self, sink_port: int, workers: int,
                 extra_env: dict[str, str] | None = None, sign: str = "") -> None:
        self.extra_env = dict(extra_env or {})
        self.dir = Path(tempfile.mkdtemp(prefix="postroom-bench-"))
        self.port = common.free_port()
        (self.dir / "maps").mkdir()
        (self.dir / "postroom.toml").write_text(PROFILE.format(port=self.port, workers=workers))
        (self.dir / "maps/mailertable").write_text(f". esmtp:[127.0.0.1]:{sink_port}\n")
        if sign:  # a key for smtp-source's sender domain: every relayed message is signed
            subprocess.run([POSTROOM, "dkim", "keygen", "--site", str(self.dir),
                            "--algorithm", sign, SENDER_DOMAIN],
                           check=True, stdout=subprocess.DEVNULL)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        self._err = (self.dir / "serve.err").open("w")  # closed in stop()
        self.proc = subprocess.Popen([POSTROOM, "serve", "--site", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=self._err,
                                     env={**os.environ, **self.extra_env})
        if not common.wait_listening(self.port, timeout=20):
            raise RuntimeError("postroom did not start")
        time.sleep(1.0)  # let the intake processes come up
        return self.port

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def queued(self) -> int:
        active = self.dir / "queue/active"
        return sum(1 for _ in os.scandir(active)) if active.exists() else 0

    def wait_queue_empty(self, timeout: float = 600) -> float | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.queued() == 0:
                return time.perf_counter()
            time.sleep(0.01)
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                # the intake processes, should the master have died first
                subprocess.run(["pkill", "-KILL", "-f", f"postroom.worker --site {self.dir}"],
                               check=False)
            self._err.close()
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


def one_run(kind: str, rcpts: int, messages: int, workers: int,
            delay_ms: float = 0.0) -> dict[str, Any]:
    """One load against one server; ``kind`` is "postfix", "postroom" or "postroom-ALG"
    (postroom signing with an ALG key)."""
    counter = fsync_delay.new_counter()
    env = fsync_delay.environment(delay_ms, counter)
    ours = kind.startswith("postroom")
    with common.SmtpSink() as sink:
        server: Any = (Postroom(sink.port, workers, env, sign=kind.partition("-")[2]) if ours
                       else PostfixReference(extra_env=env))
        try:
            port = server.start() if ours else server.start(sink.port)
            if kind == "postfix":
                time.sleep(0.5)
            gate = common.quiet_gate(timeout_s=30)
            if not gate["passed"]:  # the run goes on, but its result says so
                print(f"{kind}: the box did not quiet down ({gate['busy_pct']} % busy)",
                      flush=True)
            trees = {"server": server.pid if ours else server.master_pid(),
                     "sink": sink.pid}
            fsync_delay.reset(counter)
            with common.ProcessSampler(trees) as sampler:
                res = common.run_smtp_source(port, messages, rcpts=rcpts)
                sampler.mark("accepted", pss=True)
                done = server.wait_queue_empty()
                sampler.mark("empty")
            fsyncs = fsync_delay.count(counter)
            expected = messages
            end = time.monotonic() + 60
            while sink.messages() < expected and time.monotonic() < end:
                time.sleep(0.05)
            e2e = (done - res["t_start"]) if done else None
            # the load tools are measured too, so "foreign" is only what is not ours
            win = sampler.window("start", "empty", {"source": res["source_cpu_s"]})
            steal = win.get("steal_pct") or 0.0
            if steal > STEAL_WARN_PCT:  # the gate saw a quiet box; a neighbour came later
                print(f"{kind}: the hypervisor took {steal} % of the CPU during this run "
                      "(steal): its rate is not comparable; run it again", flush=True)
            return {
                "accept_msgs_per_s": res["msgs_per_s"],
                "e2e_msgs_per_s": round(messages / e2e, 1) if e2e else None,
                "sink_messages": sink.messages(),
                "fsync_delay_ms": delay_ms,
                "quiet_gate_passed": gate["passed"],
                "fsyncs_per_msg": round(fsyncs / messages, 2),
                "server_cpu_ms_per_msg": round(win["cpu_s"]["server"] * 1000 / messages, 3),
                "server_cpu_pct": win["cpu_pct"]["server"],
                "box_cpu_pct": win.get("box_cpu_pct"),
                "foreign_cpu_pct": win.get("foreign_cpu_pct"),
                "steal_pct": win.get("steal_pct"),
                "sink_cpu_pct": win["cpu_pct"]["sink"],
                "top_foreign": win.get("top_foreign"),
                "peak_rss_mb": round(sampler.peak_rss.get("server", 0) / 2**20, 1),
                "pss_mb_at_accepted": sampler.pss_mb("accepted").get("server"),
                "source_cpu_pct": res["source_cpu_pct"],
                "command": res["command"],
            }
        finally:
            server.stop()
            counter.unlink(missing_ok=True)


def idle_connections(count: int, workers: int) -> dict[str, Any]:
    """RSS of the postroom tree before and with ``count`` idle (greeted) connections."""
    with common.SmtpSink() as sink:
        pr = Postroom(sink.port, workers)
        try:
            port = pr.start()
            stats = common.all_stats()
            base = sum(p.rss for p in common.tree_of([pr.pid], stats))
            socks = []
            for _ in range(count):
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                socks.append(s)
            for s in socks:
                s.recv(512)  # the greeting: the session exists
            time.sleep(1)
            stats = common.all_stats()
            loaded = sum(p.rss for p in common.tree_of([pr.pid], stats))
            for s in socks:
                s.close()
            return {"connections": count, "rss_mb_before": round(base / 2**20, 1),
                    "rss_mb_with_idle": round(loaded / 2**20, 1),
                    "kb_per_connection": round((loaded - base) / count / 1024, 1)}
        finally:
            pr.stop()


def big_message(recipients: int, workers: int) -> dict[str, Any]:
    """One message with ``recipients`` recipients for one destination: time to hand over."""
    with common.SmtpSink() as sink:
        pr = Postroom(sink.port, workers)
        try:
            port = pr.start()
            rcpts = [f"u{i:05d}@example.test" for i in range(recipients)]
            body = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 50
            t0 = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as c:
                c.sendmail("a@example.test", rcpts, body)
            t1 = time.perf_counter()
            done = pr.wait_queue_empty()
            assert done is not None
            return {"recipients": recipients, "accept_s": round(t1 - t0, 2),
                    "handover_s": round(done - t1, 2),
                    "rcpts_per_s": round(recipients / (done - t1), 0),
                    "sink_transactions": sink.messages()}
        finally:
            pr.stop()


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return round(common.median_of([r[key] or 0 for r in runs]), 2)

    return {"runs": runs, "accept_median": med("accept_msgs_per_s"),
            "e2e_median": med("e2e_msgs_per_s"), "fsyncs_per_msg": med("fsyncs_per_msg"),
            "cpu_ms_per_msg": med("server_cpu_ms_per_msg"),
            "pss_mb": med("pss_mb_at_accepted")}


def ratio_table(results: dict[str, Any], delays: list[float],
                variants: list[str] | None = None) -> str:
    """postroom / Postfix, per load and fsync delay (the table docs/performance.md shows);
    ``variants``: the postroom kinds run ("postroom", "postroom-rsa", ...)."""
    rows = []
    for delay in delays:
        for rcpts in (1, 10):
            tail = f"_r{rcpts}" + (f"_delay{delay:g}ms" if delay else "")
            ref = results[f"postfix{tail}"]
            for variant in variants or ["postroom"]:
                ours = results[f"{variant}{tail}"]
                for what in ("accept", "e2e"):
                    a, b = ours[f"{what}_median"], ref[f"{what}_median"]
                    rows.append((f"+{delay:g} ms" if delay else "machine's own", rcpts,
                                 variant, what, a, b, round(a / b, 2) if b else "-"))
                rows.append(("", rcpts, variant, "CPU ms/msg", ours["cpu_ms_per_msg"],
                             ref["cpu_ms_per_msg"], ""))
                rows.append(("", rcpts, variant, "fsyncs/msg", ours["fsyncs_per_msg"],
                             ref["fsyncs_per_msg"], ""))
                rows.append(("", rcpts, variant, "PSS MB", ours["pss_mb"], ref["pss_mb"], ""))
    return common.table(rows, ("fsync", "rcpts", "server", "measure", "postroom",
                               "Postfix", "ratio"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=0,
                    help="postroom intake processes (default 0: the server's own, one per core)")
    ap.add_argument("--skip-postfix", action="store_true")
    ap.add_argument("--only", choices=["accept", "idle", "big"], default=None)
    ap.add_argument("--fsync-delay-ms", type=float, nargs="+", default=[0.0],
                    help="added to every fsync in both servers, one comparison per value")
    ap.add_argument("--sign", nargs="+", choices=["rsa", "ed25519"], default=[],
                    help="also run postroom signing every message with a key of this kind")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {"machine": common.machine_info(), "argv": sys.argv,
                               "fsync": common.fsync_cost(Path(tempfile.gettempdir()))}
    print(f"fsync of 4 KiB here: p50 {results['fsync']['p50_ms']} ms", flush=True)
    if args.only in (None, "accept"):
        variants = ["postroom"] + [f"postroom-{alg}" for alg in args.sign]
        kinds = variants + ([] if args.skip_postfix else ["postfix"])
        for delay in args.fsync_delay_ms:
            for rcpts in (1, 10):
                # alternate the servers run by run, so that drift on the machine hits both
                by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
                for _ in range(args.runs):
                    for kind in kinds:
                        by_kind[kind].append(
                            one_run(kind, rcpts, args.messages, args.workers, delay))
                for kind, runs in by_kind.items():
                    key = f"{kind}_r{rcpts}" + (f"_delay{delay:g}ms" if delay else "")
                    results[key] = summary(runs)
                    print(f"{key}: accept {results[key]['accept_median']} msg/s, "
                          f"e2e {results[key]['e2e_median']} msg/s, "
                          f"{results[key]['fsyncs_per_msg']} fsyncs/msg  "
                          f"({[r['accept_msgs_per_s'] for r in runs]})", flush=True)
        if not args.skip_postfix:
            print(ratio_table(results, args.fsync_delay_ms, variants), flush=True)
    if args.only in (None, "idle"):
        results["idle"] = idle_connections(1000, args.workers)
        print("idle:", results["idle"], flush=True)
    if args.only in (None, "big"):
        results["big"] = big_message(10_000, args.workers)
        print("big:", results["big"], flush=True)
    name = "intake" if args.only is None else f"intake_{args.only}"
    if args.sign:
        name += "_signed"
    if args.skip_postfix:
        name += "_postroom_only"  # never overwrite a same-run comparison
    path = common.write_result(name, results)
    print(f"written to {path}")
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, default=str)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
