#!/usr/bin/env python3
"""A private Postfix instance for benchmarking, without touching the system's /etc/postfix.

This repeats the reference set-up of /work/shared/reference/benchmarks.md (Part 1) in a
throw-away directory instead of editing /etc/postfix:

* ``BASE/etc``   a private ``config_directory``: copies of /etc/postfix/main.cf and master.cf,
  changed with ``postconf -c BASE/etc -e`` to the benchmark settings (relayhost
  ``[127.0.0.1]:SINKPORT``, ``mynetworks = 127.0.0.0/8``, loopback-only, IPv4, transports
  ``smtp``, no peer-name lookups, no DNS, no TLS, ``maillog_file`` in BASE);
* ``BASE/queue`` its ``queue_directory``, ``BASE/data`` its ``data_directory``;
* master.cf: the port-25 ``smtp inet`` line commented out and a
  ``127.0.0.1:PORT inet n - y - - smtpd`` listener added. Debian's chroot column (``y``) is
  kept, as in the reference, and the chroot (the private queue directory) is filled by
  Debian's own ``/usr/lib/postfix/configure-instance.sh`` run with ``MAIL_CONFIG=BASE/etc``.
  ``chroot=False`` sets every service to ``n`` instead.

Ports are chosen free by binding port 0 first. ``postfix -c BASE/etc check`` then ``start``.
The system instance (/etc/postfix, /var/spool/postfix) is never read for writing; ``smoke``
checks this by hashing /etc/postfix before and after.

Use::

    from postfix_reference import PostfixReference
    pf = PostfixReference()
    port = pf.start(sink_port)        # -> the smtpd port on 127.0.0.1
    pf.queue_empty()                  # counts queue files (incoming/active/deferred/maildrop)
    pf.stop()                         # postfix stop, wait for master to exit, remove BASE

or the module functions ``start(sink_port) -> port``, ``queue_empty()``, ``stop()`` on one
default instance. ``python bench/postfix_reference.py smoke`` runs a one-message check.

The load-generator, sink and CPU-sampling helpers live in ``common.py`` and are re-exported
here (``SmtpSink``, ``run_smtp_source``, ``ProcessSampler``, ``quiet_gate``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from . import common
except ImportError:  # run as a script, or imported with bench/ on sys.path
    import common  # type: ignore[no-redef]

SmtpSink = common.SmtpSink
run_smtp_source = common.run_smtp_source
ProcessSampler = common.ProcessSampler
quiet_gate = common.quiet_gate
free_port = common.free_port

SYSTEM_CONFIG = Path("/etc/postfix")
POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTSUPER = "/usr/sbin/postsuper"
CONFIGURE_INSTANCE = "/usr/lib/postfix/configure-instance.sh"
# Queue subdirectories that hold messages not yet delivered (hold is counted separately).
PENDING_QUEUES = ("maildrop", "incoming", "active", "deferred")


def benchmark_settings(sink_port: int, base: Path) -> list[str]:
    """The main.cf settings of benchmarks.md, for a private instance in ``base``."""
    return [
        f"queue_directory = {base / 'queue'}",
        f"data_directory = {base / 'data'}",
        f"relayhost = [127.0.0.1]:{sink_port}",
        # benchmarks.md also lists [::1]/128; this instance is IPv4-only, so it is left out
        "mynetworks = 127.0.0.0/8",
        "inet_interfaces = loopback-only",
        "inet_protocols = ipv4",
        "default_transport = smtp",
        "relay_transport = smtp",
        "smtpd_peername_lookup = no",
        "smtp_dns_support_level = disabled",
        "smtpd_tls_security_level = none",
        "smtp_tls_security_level = none",
        f"maillog_file = {base / 'maillog'}",
    ]


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 60.0,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc


def _count_files(path: Path, limit: int = 10_000_000) -> int:
    """Regular files under ``path`` (queue files; deferred is hashed into subdirectories)."""
    n = 0
    todo = [path]
    while todo and n < limit:
        d = todo.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        todo.append(Path(e.path))
                    else:
                        n += 1
        except FileNotFoundError:
            continue
    return n


class PostfixReference:
    """One private Postfix instance (see the module docstring)."""

    def __init__(self, base: str | os.PathLike[str] | None = None, *, chroot: bool = True,
                 keep: bool = False, hold: bool = False,
                 extra_settings: list[str] | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.base = Path(base) if base else None
        # handed to every daemon (through import_environment), e.g. fsync_delay's
        self.extra_env = dict(extra_env or {})
        self.chroot = chroot
        self.keep = keep
        self.hold = hold
        self.extra_settings = list(extra_settings or [])
        self.port: int | None = None
        self.sink_port: int | None = None
        self.started = False
        self.check_output = ""
        self._made_base = False

    # -- paths ------------------------------------------------------------------------------

    @property
    def config_dir(self) -> Path:
        assert self.base is not None
        return self.base / "etc"

    @property
    def queue_dir(self) -> Path:
        assert self.base is not None
        return self.base / "queue"

    @property
    def maillog(self) -> Path:
        assert self.base is not None
        return self.base / "maillog"

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env, "MAIL_CONFIG": str(self.config_dir)}

    # -- set-up -----------------------------------------------------------------------------

    def configure(self, sink_port: int, smtp_port: int | None = None) -> int:
        """Write the private config and queue; return the smtpd port."""
        if os.geteuid() != 0:
            raise PermissionError("a Postfix instance must be started as root")
        if self.base is None:
            # same file system as /var/spool/postfix (not tmpfs), so fsync costs the same
            self.base = Path(tempfile.mkdtemp(prefix="postroom-bench-postfix-", dir="/var/tmp"))
            self._made_base = True
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)  # the postfix user must reach queue/ and data/
        for sub in ("etc", "queue", "data"):
            (self.base / sub).mkdir(exist_ok=True)
        shutil.chown(self.base / "data", user="postfix")
        for name in ("main.cf", "master.cf"):
            shutil.copy2(SYSTEM_CONFIG / name, self.config_dir / name)
        port = smtp_port or free_port()
        settings = benchmark_settings(sink_port, self.base)
        if not Path("/etc/aliases.db").exists():
            # never run newaliases here: it would write the system's /etc/aliases.db
            settings += ["alias_maps =", "alias_database ="]
        if self.hold:
            # accept-only: every message goes to the hold queue, nothing is relayed
            settings.append("smtpd_data_restrictions = check_client_access static:HOLD")
        settings += self.extra_settings
        if self.extra_env:
            default = _run([POSTCONF, "-d", "-h", "import_environment"]).stdout.strip()
            settings.append("import_environment = " + " ".join(
                [default, *(f"{k}={v}" for k, v in self.extra_env.items())]))
        _run([POSTCONF, "-c", str(self.config_dir), "-e", *settings])
        self._write_master(port)
        if self.chroot:
            # Debian's helper copies hosts/nsswitch/resolv.conf/services/libs into the chroot,
            # which is the queue directory of the instance named by MAIL_CONFIG.
            _run(["sh", CONFIGURE_INSTANCE, "-"], env=self.env())
        check = _run([POSTFIX, "-c", str(self.config_dir), "check"])
        self.check_output = (check.stdout + check.stderr).strip()
        self.port, self.sink_port = port, sink_port
        return port

    def _write_master(self, port: int) -> None:
        path = self.config_dir / "master.cf"
        out: list[str] = []
        for line in path.read_text().splitlines():
            fields = line.split()
            if line and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
                if fields[0] == "smtp" and fields[1] == "inet":
                    out.append("#" + line)  # the port-25 listener stays off
                    continue
                if not self.chroot and fields[4] in ("y", "-"):
                    line = re.sub(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)\S+", lambda m: m.group(1) + "n",
                                  line)
            out.append(line)
        chroot = "y" if self.chroot else "n"
        out += ["# postroom bench: loopback-only SMTP listener on a free port",
                f"127.0.0.1:{port} inet n       -       {chroot}       -       -       smtpd"]
        path.write_text("\n".join(out) + "\n")

    def start(self, sink_port: int, smtp_port: int | None = None) -> int:
        """Configure and start the instance, relaying to 127.0.0.1:sink_port; return the
        smtpd port once it listens."""
        port = self.configure(sink_port, smtp_port)
        _run([POSTFIX, "-c", str(self.config_dir), "start"])
        self.started = True
        atexit.register(self.stop)
        if not common.wait_listening(port, timeout=20):
            log = self.maillog.read_text(errors="replace")[-2000:] if self.maillog.exists() else ""
            self.stop()
            raise RuntimeError(f"Postfix smtpd did not listen on 127.0.0.1:{port}\n{log}")
        return port

    # -- state ------------------------------------------------------------------------------

    def master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def queue_counts(self) -> dict[str, int]:
        return {q: _count_files(self.queue_dir / q)
                for q in (*PENDING_QUEUES, "hold", "corrupt")}

    def queue_empty(self, include_hold: bool = False) -> bool:
        """No message waiting: maildrop, incoming, active and deferred are empty (hold too,
        with ``include_hold``). Counts the files as root, like ``postqueue -p`` would show,
        without starting showq inside the measured instance."""
        queues = (*PENDING_QUEUES, "hold") if include_hold else PENDING_QUEUES
        return all(_count_files(self.queue_dir / q, limit=1) == 0 for q in queues)

    def wait_queue_empty(self, timeout: float = 300.0, poll: float = 0.01) -> float | None:
        """Block until queue_empty(); return the perf_counter time it was seen, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue_empty():
                return time.perf_counter()
            time.sleep(poll)
        return None

    def delete_hold(self) -> None:
        _run([POSTSUPER, "-c", str(self.config_dir), "-d", "ALL", "hold"], check=False)

    def postqueue(self) -> str:
        return _run(["/usr/sbin/postqueue", "-c", str(self.config_dir), "-p"],
                    check=False).stdout

    # -- tear-down --------------------------------------------------------------------------

    def stop(self) -> None:
        """``postfix stop``, wait (bounded) for the master to exit, then remove BASE."""
        if self.started and self.base is not None:
            pid = self.master_pid()
            _run([POSTFIX, "-c", str(self.config_dir), "stop"], check=False, timeout=30)
            if pid is not None and not _wait_gone(pid, timeout=15):
                _run([POSTFIX, "-c", str(self.config_dir), "abort"], check=False, timeout=30)
                if not _wait_gone(pid, timeout=5):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            self.started = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self.base is not None and self._made_base and not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostfixReference:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True  # exited; waiting for init to reap it
        except (OSError, IndexError):
            return True
        time.sleep(0.05)
    return False


# -- module-level API on one default instance -----------------------------------------------

_default: PostfixReference | None = None


def start(sink_port: int) -> int:
    """Start the default private instance relaying to 127.0.0.1:sink_port; return its port."""
    global _default
    if _default is not None:
        _default.stop()
    _default = PostfixReference()
    return _default.start(sink_port)


def queue_empty() -> bool:
    assert _default is not None, "start() first"
    return _default.queue_empty()


def stop() -> None:
    global _default
    if _default is not None:
        _default.stop()
        _default = None


# -- command line ---------------------------------------------------------------------------


def _hash_tree(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.is_symlink():
            h.update(str(p).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def smoke() -> int:
    """One message through a private instance to smtp-sink; /etc/postfix must not change."""
    before = _hash_tree(SYSTEM_CONFIG)
    with common.SmtpSink() as sink, PostfixReference(keep=False) as pf:
        port = pf.start(sink.port)
        print(f"private instance: {pf.base}  smtpd 127.0.0.1:{port}  sink 127.0.0.1:{sink.port}"
              f"  master pid {pf.master_pid()}")
        if pf.check_output:
            print("postfix check said:", pf.check_output)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail("a@example.test", ["b@example.test"],
                       b"Subject: smoke\r\n\r\npostroom bench smoke test\r\n")
        t = pf.wait_queue_empty(timeout=30)
        deadline = time.monotonic() + 10
        while sink.messages() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        log = pf.maillog.read_text(errors="replace")
        ok = t is not None and sink.messages() == 1 and "status=sent" in log
        print(f"queue empty: {t is not None}; sink received {sink.messages()}; "
              f"'status=sent' in maillog: {'status=sent' in log}")
    after = _hash_tree(SYSTEM_CONFIG)
    print(f"/etc/postfix unchanged: {before == after}")
    return 0 if ok and before == after else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("smoke", help="one message through a private instance, then clean up")
    run = sub.add_parser("run", help="start sink + instance, keep them up for --seconds")
    run.add_argument("--seconds", type=float, default=60.0)
    run.add_argument("--no-chroot", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "smoke":
        return smoke()
    with common.SmtpSink() as sink, PostfixReference(chroot=not args.no_chroot) as pf:
        port = pf.start(sink.port)
        print(f"Postfix on 127.0.0.1:{port} (config {pf.config_dir}), sink 127.0.0.1:"
              f"{sink.port}; up for {args.seconds:.0f} s", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(max(0.0, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
