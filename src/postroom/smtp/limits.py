"""Connection limits: who may open one more SMTP session, and how long a session may go on.

At connect (``ConnectionGate.admit``), in this order, each refusal a ``421`` and one line
in the mail log:

    file descriptors   this process's sessions may use its RLIMIT_NOFILE (raised to the
                       hard limit at start, ``raise_fd_limit``) but for a reserve for
                       the spool, the log and outbound connections: past it,
                       ``421 4.3.2 ... too many connections`` instead of failing accept()
    client rate        limits.client_rate connections per client in
                       limits.client_rate_window (all intake processes together)
    listener total     limits.connections at once on the listener (the whole server)
    client count       limits.client_connections at once per client on the listener

In a session (``SessionGuard``): limits.session_commands replies in all (each command
has one; DATA has two, 354 and the end) and limits.session_errors 4xx/5xx replies since
the last message accepted (a harvester's or junk client's RCPTs), then ``421 4.7.0`` and
close; and limits.session_time from connect to hang-up, whatever the client does, on top
of the idle timeout.

A client is its address, or its /64 for IPv6 (``postroom.smtp.auth``). Clients in
``networks.relay`` and ``networks.inbound`` (the department's machines and the upstream
relays, which send a whole site's mail from a few addresses) are held to the listener
total and the descriptor limit only, unless limits.trusted_exempt is false, as Postfix's
``smtpd_client_event_limit_exceptions = $mynetworks``.

Across processes: concurrent counts are in the shared table of ``postroom.smtp.conntable``
(exact, and a crashed process's counts are dropped), rates in a windowed table like the
AUTH failure counts (``FailureLimiter``). Why a shared table and not a per-process share of
each limit is written there.
"""

from __future__ import annotations

import logging
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from postroom import maillog
from postroom.smtp.auth import FailureLimiter, subject_of
from postroom.smtp.conntable import ConnectionTable, LocalTable, key_of, open_table

if TYPE_CHECKING:
    from postroom.site.profile import LimitsSection

log = logging.getLogger("postroom.smtp")

_RESERVE_MIN = 256  # descriptors kept for the spool, the log, DNS, outbound connections


def too_many_from_client(hostname: str) -> str:
    return f"421 4.7.0 {hostname} Error: too many connections from your address"


def too_fast_from_client(hostname: str) -> str:
    return (f"421 4.7.0 {hostname} Error: too many connections from your address in a "
            "short time; try again later")


def too_many_in_total(hostname: str) -> str:
    return f"421 4.3.2 {hostname} Error: too many connections; try again later"


def too_many_errors(hostname: str) -> str:
    return f"421 4.7.0 {hostname} Error: too many errors"


def too_many_commands(hostname: str) -> str:
    return f"421 4.7.0 {hostname} Error: too many commands"


def session_too_long(hostname: str) -> str:
    return f"421 4.4.2 {hostname} Error: session time limit exceeded"


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit (bounded by the
    kernel's nr_open); returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard
    if wanted == resource.RLIM_INFINITY or wanted > _nr_open():
        wanted = _nr_open()
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise the file descriptor limit from %d to %d: %s",
                        soft, wanted, e)
            return soft, soft
        return soft, wanted
    return soft, soft


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def session_budget(fd_limit: int) -> int:
    """How many sessions one process may hold under ``fd_limit`` descriptors: all but a
    reserve of max(256, 5 %)."""
    return max(1, fd_limit - max(_RESERVE_MIN, fd_limit // 20))


@dataclass(slots=True)
class Ticket:
    """One admitted connection's counts, given back by ``ConnectionGate.release``."""

    held: list[int]
    exempt: bool
    released: bool = False


@dataclass
class ConnectionGate:
    """The connect-time limits of one intake process (every listener of it)."""

    state_dir: Path
    table: ConnectionTable | LocalTable = field(init=False)
    rate: FailureLimiter = field(init=False)
    open: int = 0
    budget: int = 0

    def __post_init__(self) -> None:
        self.table = open_table(self.state_dir / "connections")
        self.rate = FailureLimiter(1, 60.0, self.state_dir / "connect-rate")
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.budget = session_budget(soft if soft != resource.RLIM_INFINITY else 1 << 20)

    def admit(self, listener: str, ip: str, *, trusted: bool, limits: LimitsSection,
              hostname: str) -> Ticket | str:
        """A ticket for a new session, or the reply that refuses it (logged)."""
        exempt = trusted and limits.trusted_exempt
        client = subject_of(ip)
        reply, why = None, ""
        if self.open >= self.budget:
            reply = too_many_in_total(hostname)
            why = f"{self.open} sessions in process {os.getpid()}: file descriptor limit"
        elif not exempt and limits.client_rate:
            self.rate.pause = limits.client_rate_window
            seen = self.rate.hit(f"{listener}/{client}")
            if seen > limits.client_rate:
                reply = too_fast_from_client(hostname)
                why = (f"{seen} connections within {limits.client_rate_window:g}s, "
                       f"limit {limits.client_rate}")
        if reply is None:
            wanted = [(key_of(f"listener/{listener}"), limits.connections)]
            if not exempt:
                wanted.append((key_of(f"{listener}/{client}"), limits.client_connections))
            held = self.table.acquire(wanted)
            if isinstance(held, list):
                self.open += 1
                return Ticket(held, exempt)
            if held == 0:
                reply = too_many_in_total(hostname)
                why = f"{limits.connections} connections on listener {listener}"
            else:
                reply = too_many_from_client(hostname)
                why = f"{limits.client_connections} connections from {client}"
        maillog.rejected("CONNECT", f"[{ip}]", f"{reply} ({why})")
        return reply

    def release(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        self.open -= 1
        self.table.release(ticket.held)


@dataclass(slots=True)
class SessionGuard:
    """Counts one session's replies; ``counted`` returns the 421 that ends the session
    once a limit is passed (None meanwhile)."""

    commands: int
    errors: int
    hostname: str
    replies: int = 0
    failures: int = 0

    def counted(self, status: str) -> str | None:
        code = status[:3]
        if code == "220":  # the greeting, and STARTTLS's go-ahead
            return None
        self.replies += 1
        if code[:1] in ("4", "5") and code != "421" and not status.startswith("452 4.5.3"):
            # 452 4.5.3 (too many recipients) is flow control: the client sends the rest
            # in the next transaction (RFC 5321 4.5.3.1.10), it has done nothing wrong
            self.failures += 1
        if self.errors and self.failures > self.errors:
            return too_many_errors(self.hostname)
        if self.commands and self.replies > self.commands:
            return too_many_commands(self.hostname)
        return None

    def accepted(self) -> None:
        """A message was queued: the errors before it are forgiven."""
        self.failures = 0
