#!/usr/bin/env python3
"""The Postfix reference of benchmarks.md, measured in this run on this machine.

Modes (each on a fresh private instance from postfix_reference.py, smtp-sink as the relay
target; 20 sessions, 4 KiB, a new connection per message, as in benchmarks.md):

* ``sink``   smtp-source straight into smtp-sink: the protocol / load-generator ceiling (a1)
* ``relay``  Postfix relaying to smtp-sink, 1 recipient: accept msg/s (smtp-source wall)
             and e2e msg/s (until the queue is empty) (b1)
* ``rcpt10`` the same with ``-r 10`` (b2)
* ``hold``   Postfix accept-only: every message to the hold queue, nothing relayed (b3)

Every run waits for the quiet gate first, then records the CPU of the Postfix tree, of
smtp-source (wait4) and of smtp-sink, the whole box's CPU and the foreign CPU (box minus all
of those and this harness), and the Postfix tree's peak RSS. Results: bench/results/
postfix_reference.json. Run as root::

    .venv/bin/python bench/bench_postfix.py [--runs 3] [--messages 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

try:
    from . import common
    from .postfix_reference import PostfixReference
except ImportError:
    import common  # type: ignore[no-redef]
    from postfix_reference import PostfixReference  # type: ignore[no-redef]

MODES = {
    "sink": {"label": "smtp-sink alone (protocol ceiling)", "rcpts": 1},
    "relay": {"label": "Postfix relay to sink, 1 rcpt", "rcpts": 1},
    "rcpt10": {"label": "Postfix relay to sink, -r 10", "rcpts": 10},
    "hold": {"label": "Postfix accept-only (hold queue)", "rcpts": 1},
}


def one_run(mode: str, args: argparse.Namespace, sink: common.SmtpSink,
            pf: PostfixReference | None, port: int, measured: bool = True) -> dict[str, Any]:
    rcpts = MODES[mode]["rcpts"]
    messages = args.messages if measured else args.warmup
    gate = common.quiet_gate(args.quiet_threshold, timeout_s=args.quiet_timeout) \
        if measured and not args.no_quiet_gate else {"passed": None}
    trees: dict[str, int] = {"sink": sink.pid}
    if pf is not None:
        pid = pf.master_pid()
        assert pid is not None
        trees["postfix"] = pid
    sink_before = sink.messages()
    with common.ProcessSampler(trees, interval=args.sample_interval) as s:
        src = common.run_smtp_source(port, messages, args.sessions, args.size, rcpts,
                                     timeout=args.timeout)
        s.mark("accepted", pss=True)
        t_empty = None
        if mode in ("relay", "rcpt10") and pf is not None:
            t_empty = pf.wait_queue_empty(timeout=args.timeout)
            if t_empty is None:
                raise RuntimeError(f"queue not empty after {args.timeout} s: {pf.queue_counts()}")
            s.mark("e2e")
    extra = {"smtp-source": src["source_cpu_s"]}
    accept_w = s.window("start", "accepted", extra)
    e2e_w = s.window("start", "e2e", extra) if t_empty is not None else None
    run: dict[str, Any] = {
        "accept_msgs_per_s": src["msgs_per_s"], "accept_wall_s": src["wall"],
        "quiet_gate": gate, "accept_window": accept_w, "rss": s.rss(),
        "command": src["command"],
    }
    main_w = accept_w
    server = "postfix" if pf is not None else "sink"
    if e2e_w is not None:
        assert t_empty is not None
        e2e = t_empty - src["t_start"]
        run.update(e2e_wall_s=round(e2e, 4), e2e_msgs_per_s=round(messages / e2e, 1),
                   e2e_window=e2e_w)
        main_w = e2e_w
        deadline = time.monotonic() + 10
        while sink.messages() - sink_before < messages and time.monotonic() < deadline:
            time.sleep(0.05)
        run["sink_received"] = sink.messages() - sink_before
    if mode == "sink":
        run["sink_received"] = sink.messages() - sink_before
    if mode == "hold" and pf is not None:
        run["held"] = pf.queue_counts()["hold"]
        pf.delete_hold()
    server_cpu_s = main_w["cpu_s"][server]
    run.update(
        server_cpu_pct=main_w["cpu_pct"][server],
        source_cpu_pct=main_w["cpu_pct"]["smtp-source"],
        sink_cpu_pct=main_w["cpu_pct"]["sink"],
        box_cpu_pct=main_w["box_cpu_pct"],
        foreign_cpu_pct=main_w["foreign_cpu_pct"],
        harness_cpu_pct=main_w["harness_cpu_pct"],
        ms_cpu_per_msg=round(1000.0 * server_cpu_s / messages, 3),
        server_peak_rss_mb=s.rss()[server]["peak_rss_sum_mb"],
        server_pss_at_accept_mb=s.pss_mb("accepted")[server],
        top_foreign=main_w["top_foreign"],
    )
    run["clean"] = run["foreign_cpu_pct"] <= args.max_foreign
    return run


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    contended: list[dict[str, Any]] = []
    with common.SmtpSink() as sink:
        if mode == "sink":
            pf, port = None, sink.port
            ctx: Any = _Null()
        else:
            pf = PostfixReference(chroot=not args.no_chroot, keep=args.keep,
                                  hold=(mode == "hold"))
            ctx = pf
        with ctx:
            if pf is not None:
                port = pf.start(sink.port)
                print(f"  [{mode}] private Postfix {pf.base} on 127.0.0.1:{port}, "
                      f"sink 127.0.0.1:{sink.port}", flush=True)
            if args.warmup:
                one_run(mode, args, sink, pf, port, measured=False)
            attempts = 0
            while len(runs) < args.runs and attempts < args.max_attempts:
                attempts += 1
                r = one_run(mode, args, sink, pf, port)
                (runs if r["clean"] else contended).append(r)
                e2e = f", e2e {r['e2e_msgs_per_s']:.0f}" if "e2e_msgs_per_s" in r else ""
                tops = ", ".join(f"{t['comm']} {t['cpu_pct']:.0f}%" for t in r["top_foreign"][:3])
                print(f"  [{mode}] attempt {attempts}: accept {r['accept_msgs_per_s']:.0f}"
                      f"{e2e} msg/s; server {r['server_cpu_pct']:.0f}% source "
                      f"{r['source_cpu_pct']:.0f}% box {r['box_cpu_pct']:.0f}% foreign "
                      f"{r['foreign_cpu_pct']:.0f}% ({tops}) quiet={r['quiet_gate']['passed']}"
                      f"{'' if r['clean'] else '  -> contended, not counted'}", flush=True)
            postfix_log_lines = _count_log(pf) if pf is not None else None
    all_clean = len(runs) >= args.runs
    if not all_clean:
        print(f"  [{mode}] only {len(runs)} of {args.runs} runs under {args.max_foreign}% "
              "foreign CPU; the summary includes the contended runs", flush=True)
        runs = runs + contended
        contended = []
    summary = {key: common.spread([r[key] for r in runs]) for key in (
        "accept_msgs_per_s", "e2e_msgs_per_s", "server_cpu_pct", "source_cpu_pct",
        "sink_cpu_pct", "box_cpu_pct", "foreign_cpu_pct", "ms_cpu_per_msg",
        "server_peak_rss_mb", "server_pss_at_accept_mb") if runs and all(key in r for r in runs)}
    return {"mode": mode, "label": MODES[mode]["label"], "runs": runs, "summary": summary,
            "clean": all_clean, "contended_runs": contended,
            "command": runs[0]["command"] if runs else "", "maillog_lines": postfix_log_lines}


def _count_log(pf: PostfixReference) -> int:
    try:
        with open(pf.maillog, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def fmt(summary: dict[str, Any], key: str, digits: int = 0) -> str:
    s = summary.get(key)
    if not s:
        return "-"
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'])} ({f.format(s['min'])}-{f.format(s['max'])})"


def med(summary: dict[str, Any], key: str, digits: int = 0) -> str:
    s = summary.get(key)
    return "-" if not s else f"{s['median']:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Postfix reference benchmark (see benchmarks.md)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--warmup", type=int, default=1000,
                    help="messages sent once per mode before the measured runs (0: none)")
    ap.add_argument("--modes", default="sink,relay,rcpt10,hold",
                    help=f"comma-separated, from {', '.join(MODES)}")
    ap.add_argument("--quiet-threshold", type=float, default=25.0,
                    help="quiet gate: box CPU %% of one core, 2 windows of 1 s in a row")
    ap.add_argument("--quiet-timeout", type=float, default=60.0)
    ap.add_argument("--no-quiet-gate", action="store_true")
    ap.add_argument("--max-foreign", type=float, default=30.0,
                    help="a run with more foreign CPU (%% of one core) is contended: it is "
                    "repeated, not counted")
    ap.add_argument("--max-attempts", type=int, default=0,
                    help="attempts per mode (default 3 x --runs)")
    ap.add_argument("--sample-interval", type=float, default=0.2)
    ap.add_argument("--timeout", type=float, default=600.0, help="per smtp-source / queue wait")
    ap.add_argument("--no-chroot", action="store_true",
                    help="run every Postfix service with chroot n (default keeps Debian's y)")
    ap.add_argument("--keep", action="store_true", help="keep the private instance directories")
    ap.add_argument("--name", default="postfix_reference", help="results file name")
    args = ap.parse_args(argv)
    args.max_attempts = args.max_attempts or 3 * args.runs
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}")
    print(f"Postfix reference: {args.runs} runs x {args.messages} messages, "
          f"{args.sessions} sessions, {args.size} bytes; modes {', '.join(modes)}", flush=True)
    gate = common.quiet_gate(args.quiet_threshold, timeout_s=args.quiet_timeout)
    print(f"quiet gate before start: {gate}", flush=True)
    results = [run_mode(m, args) for m in modes]
    rows = []
    for r in results:
        s = r["summary"]
        rows.append([r["mode"], r["label"], len(r["runs"]), fmt(s, "accept_msgs_per_s"),
                     fmt(s, "e2e_msgs_per_s"), med(s, "server_cpu_pct"),
                     med(s, "source_cpu_pct"), med(s, "box_cpu_pct"),
                     fmt(s, "foreign_cpu_pct"), med(s, "ms_cpu_per_msg", 2),
                     med(s, "server_pss_at_accept_mb", 1)])
    print()
    print(common.table(rows, ["mode", "setup", "runs", "accept msg/s median (min-max)",
                              "e2e msg/s", "server CPU %", "smtp-source CPU %", "box CPU %",
                              "foreign CPU %", "ms CPU/msg (server)", "server PSS MB"]))
    print("\nserver = smtp-sink for 'sink', the Postfix tree otherwise; CPU over the e2e window "
          "for relay modes, the accept window otherwise (100 = one core).")
    path = common.write_result(args.name, {
        "settings": {k: v for k, v in vars(args).items()},
        "median_run_foreign_cpu_note": "foreign = box CPU - (postfix + sink + smtp-source + "
                                       "harness); % of one core",
        "results": results,
    })
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
