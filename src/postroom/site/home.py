"""The site home: one directory that holds everything the service needs, laid out as the
table below says; back up what it marks and the service can be rebuilt.

A SiteHome needs no profile: the queue, the quiescent flag and the server's pid are found
from the directory alone, so the commands that look after them keep working while the
profile is broken. A Site is a SiteHome with its profile.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from postroom.errors import ConfigError
from postroom.site.profile import DEFAULT_LOG_FILE, Profile

QUIESCENT_RECHECK = 0.1  # seconds: `postroom quiesce` takes effect within this


@dataclass(frozen=True, slots=True)
class Part:
    """One entry of a site home."""

    name: str        # relative to the site home
    directory: bool
    backed_up: bool  # without it the service cannot be rebuilt as it was
    holds: str


PROFILE = Part("postroom.toml", False, True, "the site profile")
MAPS = Part("maps", True, True,
            "aliases, forwards, virtusertable, mailertable, local users, :include: files")
TLS = Part("tls", True, True, "certificates and keys")
STORE = Part("postroom.db", False, True,
             "the SQLite store (users, lists), unless database.url names another database")
QUEUE = Part("queue", True, True, "the spool: every message that got a 250 and is not done")
MAIL = Part("mail", True, True, "Maildir deliveries of local users")
ARCHIVES = Part("archives", True, True, "per-list mbox archives")
EXPORT = Part("export", True, False,
              "files made for others (the address list for the upstream relays); "
              "made again from the store and the maps")
KEYS = Part("keys", True, True,
            "the SRS secrets (srs.secret) and the DKIM private keys (dkim/DOMAIN.SELECTOR.key)")
LOG = Part("log", True, True, "the mail log: what was taken, delivered and returned")
STATE = Part("state", True, False,
             "this machine's running state: serve.pid, listeners.json, the quiescent flag, "
             "AUTH failure counts (a restore sets quiescent itself)")

LAYOUT: tuple[Part, ...] = (PROFILE, MAPS, TLS, KEYS, STORE, QUEUE, MAIL, ARCHIVES, EXPORT, LOG,
                            STATE)

PROFILE_NAME = PROFILE.name
PID_FILE = "serve.pid"        # in state/, written by postroom serve
QUIESCENT_FLAG = "quiescent"  # in state/, written by postroom quiesce: the reason


class SiteHome:
    """A site home's directory and where things are in it.

    ``profile_error`` is why the profile could not be used (None for a Site). A bare home
    writes its log events to ``log_file`` and names itself ``hostname``: what could still
    be read from the broken profile, else the defaults."""

    def __init__(self, home: Path, *, profile_error: ConfigError | None = None,
                 log_file: str | None = None, hostname: str | None = None) -> None:
        self.home = home
        self.profile_error = profile_error
        self._log_file = log_file or DEFAULT_LOG_FILE
        self._hostname = hostname
        self._quiescent_checked = -1.0
        self._quiescent_flag = False

    @property
    def profile_path(self) -> Path:
        return self.home / PROFILE.name

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.home / p

    @property
    def queue_dir(self) -> Path:
        return self.home / QUEUE.name

    @property
    def state_dir(self) -> Path:
        return self.home / STATE.name

    @property
    def mail_dir(self) -> Path:
        return self.home / MAIL.name

    @property
    def log_path(self) -> Path:
        return self.path(self._log_file)

    @property
    def hostname(self) -> str:
        return self._hostname or socket.gethostname()

    # -- quiescent mode

    @property
    def profile_quiescent(self) -> bool:
        """Does the profile say ``quiescent = true``? (False when it cannot be read.)"""
        return False

    @property
    def quiescent_flag(self) -> Path:
        return self.state_dir / QUIESCENT_FLAG

    @property
    def quiescent(self) -> bool:
        """Quiescent by profile or by ``postroom quiesce`` (a flag file that survives restarts).

        The flag file is looked at no more than every QUIESCENT_RECHECK seconds: intake asks
        on every connection and transaction, and a stat per ask was a measurable cost."""
        if self.profile_quiescent:
            return True
        if time.monotonic() - self._quiescent_checked >= QUIESCENT_RECHECK:
            return self.quiescent_now()
        return self._quiescent_flag

    def quiescent_now(self) -> bool:
        """Look at the flag file now (a new connection is refused without delay)."""
        self._quiescent_flag = self.profile_quiescent or self.quiescent_flag.exists()
        self._quiescent_checked = time.monotonic()
        return self._quiescent_flag

    def quiescent_reason(self) -> str:
        """Why the site is quiescent; "" when it is not."""
        if self.profile_quiescent:
            return "profile says quiescent = true"
        try:
            return self.quiescent_flag.read_text().strip() or "postroom quiesce"
        except FileNotFoundError:
            return ""

    def quiesce(self, reason: str) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.quiescent_flag.write_text(reason + "\n")
        self._quiescent_checked = -1.0

    def resume(self) -> None:
        self.quiescent_flag.unlink(missing_ok=True)
        self._quiescent_checked = -1.0

    # -- the server

    def server_pid(self) -> int | None:
        """The pid of a running ``postroom serve`` for this site, from state/serve.pid."""
        try:
            pid = int((self.state_dir / PID_FILE).read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        try:  # a stale file may name a pid reused by another program: never signal that
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid  # no /proc here: trust the file
        return pid if b"postroom" in cmdline and b"serve" in cmdline else None


class Site(SiteHome):
    """A site home with its profile: what every part of the server is given."""

    def __init__(self, home: Path, profile: Profile) -> None:
        super().__init__(home)
        self.profile = profile

    @property
    def log_path(self) -> Path:
        return self.path(self.profile.log.file)

    @property
    def hostname(self) -> str:
        return self.profile.site.hostname

    @property
    def profile_quiescent(self) -> bool:
        return self.profile.site.quiescent

    @property
    def database_url(self) -> str:
        return self.profile.database.url or f"sqlite:///{self.home / STORE.name}"

    @property
    def local_domains(self) -> frozenset[str]:
        s = self.profile.site
        return frozenset([*s.domains, *s.host_names, s.hostname.lower()])

    @property
    def hosted_domains(self) -> frozenset[str]:
        return frozenset(self.profile.site.hosted_domains)
