"""What ``postroom status`` reports: whether a server runs for the site, whether the site
is quiescent and why, how much is queued, whether the profile can be read, and when the
last address export and the last backup ran (from ``state/periodic.json``, which the
caller reads with ``postroom.serve.periodic.read_state``). Works from the site home
alone, so a broken profile never hides the state of the site."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from postroom.site import SiteHome


@dataclass(frozen=True, slots=True)
class Status:
    site: str
    running: bool
    pid: int | None
    quiescent: bool
    quiescent_reason: str
    queued: int
    profile_error: str | None
    last_export: dict[str, Any] | None = None  # the periodic task's last run
    last_backup: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status_of(home: SiteHome, periodic: dict[str, dict[str, Any]] | None = None) -> Status:
    pid = home.server_pid()
    active = home.queue_dir / "active"
    queued = sum(1 for _ in active.glob("*")) if active.is_dir() else 0
    broken = home.profile_error
    return Status(site=str(home.home), running=pid is not None, pid=pid,
                  quiescent=home.quiescent_now(), quiescent_reason=home.quiescent_reason(),
                  queued=queued, profile_error=str(broken) if broken is not None else None,
                  last_export=(periodic or {}).get("export"),
                  last_backup=(periodic or {}).get("backup"))
