"""The periodic tasks ``serve`` runs (``postroom.serve.periodic``), one entry each.

Each task imports its module on first run: the master starts as fast as before, and a
profile that turns a task off never loads its code. A new task is one entry here and a
``[section]`` key for its interval in the profile.
"""

from __future__ import annotations

from postroom.runtime import Runtime
from postroom.serve.periodic import PeriodicTask

EXPORT_INTERVAL = 3600.0


def _export_every(rt: Runtime) -> float | None:
    return EXPORT_INTERVAL


def _export(rt: Runtime) -> str:
    from postroom.ops.export import export

    return export(rt).summary()


TASKS: tuple[PeriodicTask, ...] = (
    PeriodicTask("export", _export_every, _export, at_start=True, on_change=True),
)
