"""What the site status page and the API's status show: quiescent or not and why, the
queue (size, oldest message, deferred count), recent deliveries and bounces from the mail
log, and when the address export and the backup last ran (``state/periodic.json``)."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from postroom.envelope import RcptState
from postroom.queue.spool import Spool
from postroom.site import Site
from postroom.web.metrics import queue_state

DEFERRED_SCAN = 5000  # envelopes read for the deferred count (a bigger queue is sampled)


@dataclass
class SiteStatus:
    running: bool
    pid: int | None
    quiescent: bool
    reason: str
    queued: int
    held: int
    oldest_seconds: float | None
    deferred: int
    deferred_exact: bool
    recent_deliveries: list[str] = field(default_factory=list)
    recent_bounces: list[str] = field(default_factory=list)
    periodic: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _deferred(site: Site) -> tuple[int, bool]:
    count = seen = 0
    try:
        with Spool(site.queue_dir) as spool:
            for qid in spool.ids(include_held=False):
                seen += 1
                if seen > DEFERRED_SCAN:
                    return count, False
                try:
                    env = spool.load(qid)
                except Exception:  # a corrupt envelope is the queue listing's business
                    continue
                if any(d.state is RcptState.DEFERRED for r in env.recipients
                       for d in r.deliveries):
                    count += 1
    except OSError:
        return 0, True
    return count, True


def _log_tail(site: Site, lines: int = 2000) -> list[str]:
    try:
        with open(site.log_path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 512 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return list(deque(data.splitlines(), maxlen=lines))


def _periodic(site: Site) -> dict[str, Any]:
    try:
        data = json.loads((site.state_dir / "periodic.json").read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name in ("export", "backup"):
        entry = data.get(name) if isinstance(data, dict) else None
        if isinstance(entry, dict):
            out[name] = {"end": _when(entry.get("end")), "ok": entry.get("ok"),
                         "said": str(entry.get("said", ""))[:300],
                         "last_ok": _when(entry.get("last_ok"))}
    return out


def _when(t: object) -> str:
    if isinstance(t, int | float):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    return str(t) if t else ""


def status_of(site: Site) -> SiteStatus:
    pid = site.server_pid()
    active, held, oldest = queue_state(site)
    deferred, exact = _deferred(site)
    tail = _log_tail(site)
    deliveries = [line for line in tail if ", stat=Sent" in line][-10:]
    bounces = [line for line in tail if ", stat=Bounced" in line][-10:]
    st = SiteStatus(running=pid is not None, pid=pid, quiescent=site.quiescent_now(),
                    reason=site.quiescent_reason(), queued=active, held=held,
                    oldest_seconds=oldest, deferred=deferred, deferred_exact=exact,
                    recent_deliveries=deliveries, recent_bounces=bounces,
                    periodic=_periodic(site))
    export = site.home / "export" / "valid-addresses.txt"
    if "export" not in st.periodic and export.exists():
        st.periodic["export"] = {"end": _when(export.stat().st_mtime), "ok": True,
                                 "said": "", "last_ok": ""}
    return st
