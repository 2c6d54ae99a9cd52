"""The periodic tasks ``serve`` runs (``postroom.serve.periodic``), one entry each.

Each task imports its module on first run: the master starts as fast as before, and a
profile that turns a task off never loads its code. A new task is one entry here and a
``[section]`` key for its interval in the profile.

    export   [export] every, max_shrink      the valid-address list (ops.export)
    backup   [backup] dest, every, keep, to  a generation in dest (ops.backup)
    alerts   [alerts] every, ...             mail the postmaster about trouble (ops.alerts)
"""

from __future__ import annotations

from pathlib import Path

from postroom.runtime import Runtime
from postroom.serve.periodic import PeriodicTask, read_state


def _export_every(rt: Runtime) -> float | None:
    return rt.site.profile.export.every or None


def _export(rt: Runtime) -> str:
    from postroom.ops.export import export

    return export(rt, max_shrink=rt.site.profile.export.max_shrink).summary()


def _digests(rt: Runtime) -> str:
    from postroom.lists import scheduled

    return scheduled.digests(rt)


def _held(rt: Runtime) -> str:
    from postroom.lists import scheduled

    return scheduled.held(rt)


def _list_sync_every(rt: Runtime) -> float | None:
    entries = rt.site.profile.lists.sync
    return min(e.every for e in entries) if entries else None


def _list_sync(rt: Runtime) -> str:
    from postroom.lists import scheduled

    return scheduled.sync(rt)


def _backup_every(rt: Runtime) -> float | None:
    cfg = rt.site.profile.backup
    return cfg.every if cfg.dest else None


def _backup(rt: Runtime) -> str:
    from postroom.ops.backup import backup

    cfg = rt.site.profile.backup
    return backup(rt.site, rt.site.path(cfg.dest), to=tuple(cfg.to)).summary()


def _alerts_every(rt: Runtime) -> float | None:
    return rt.site.profile.alerts.every or None


def _alerts(rt: Runtime) -> str:
    from postroom.ops.alerts import look

    return look(rt, read_state(Path(rt.site.state_dir))).summary()


TASKS: tuple[PeriodicTask, ...] = (
    PeriodicTask("export", _export_every, _export, at_start=True, on_change=True),
    PeriodicTask("digests", lambda rt: rt.site.profile.lists.digest_check, _digests),
    PeriodicTask("held", lambda rt: rt.site.profile.lists.held_check, _held),
    PeriodicTask("list-sync", _list_sync_every, _list_sync, at_start=True),
    PeriodicTask("backup", _backup_every, _backup),
    PeriodicTask("alerts", _alerts_every, _alerts),
)
