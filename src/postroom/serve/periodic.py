"""Work ``serve`` does on a schedule, beside mail: the address export, backups, alerts,
list synchronisation, held-message reminders and expiry, digests.

A task is a blocking function of the runtime in force. It runs in a thread of the master
(one task at a time, so two never fight over the store or the disk), never in an intake
process, so a slow backup delays no 250. Each run is recorded in ``state/periodic.json``
(start, end, ok, one line said), which ``postroom status`` and ``postroom check`` read:
"when did the last backup succeed" is a question for the file, not for the log.

A task runs every ``every(runtime)`` seconds (``None``: off in this profile), first one
interval after start unless ``at_start``; ``trigger(name)`` runs it now (the control
command ``run NAME``), and tasks with ``on_change`` also run after a reload and after
the store's lists change. A task that raises is logged and recorded as failed; the next
run comes on schedule all the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postroom import maillog
from postroom.errors import PostroomError
from postroom.runtime import Reloader, Runtime
from postroom.safeio import atomic_replace

log = logging.getLogger("postroom.periodic")
STATE_NAME = "periodic.json"


@dataclass(frozen=True, slots=True)
class PeriodicTask:
    name: str
    every: Callable[[Runtime], float | None]
    run: Callable[[Runtime], str]
    at_start: bool = False
    on_change: bool = False


def read_state(state_dir: Path) -> dict[str, dict[str, Any]]:
    """What each task did last: ``{name: {"start", "end", "ok", "said", "last_ok"}}``
    (times in seconds since the epoch; ``last_ok`` is the end of the last success)."""
    try:
        data = json.loads((state_dir / STATE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class PeriodicService:
    name = "periodic"

    def __init__(self, reloader: Reloader, tasks: Sequence[PeriodicTask]) -> None:
        self.reloader = reloader
        self.tasks = {t.name: t for t in tasks}
        self.state_dir = reloader.current.site.state_dir
        self.state = read_state(self.state_dir)
        self._due: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        now = time.monotonic()
        rt = self.reloader.current
        for t in self.tasks.values():
            every = t.every(rt)
            if every is not None:
                self._due[t.name] = now if t.at_start else now + every
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def reload(self, old: Runtime, new: Runtime) -> None:
        now = time.monotonic()
        for t in self.tasks.values():
            every = t.every(new)
            if every is None:
                self._due.pop(t.name, None)
            elif t.on_change:
                self._due[t.name] = now
            else:
                self._due[t.name] = min(self._due.get(t.name, now + every), now + every)
        self._wake.set()

    def changed(self) -> None:
        """The store's lists changed: run the ``on_change`` tasks soon."""
        now = time.monotonic()
        for t in self.tasks.values():
            if t.on_change and t.every(self.reloader.current) is not None:
                self._due[t.name] = now
        self._wake.set()

    def trigger(self, name: str) -> bool:
        """Run task ``name`` now, whatever its schedule; False if there is no such task."""
        if name not in self.tasks:
            return False
        self._due[name] = time.monotonic()
        self._wake.set()
        return True

    async def run_now(self, name: str) -> dict[str, Any]:
        """Run task ``name`` and wait for it (the control command ``run NAME``)."""
        await self._run(self.tasks[name])
        return dict(self.state.get(name, {}))

    async def _loop(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            ready = sorted((due, name) for name, due in self._due.items() if due <= now)
            for _, name in ready:
                if self._stopping:
                    return
                task = self.tasks[name]
                every = task.every(self.reloader.current)
                if every is None:
                    self._due.pop(name, None)
                    continue
                self._due[name] = time.monotonic() + every
                await self._run(task)
            if self._stopping:  # stop() came while a task ran: its wake-up is not lost
                return
            self._wake.clear()
            wait = min((d for d in self._due.values()), default=now + 3600.0) - time.monotonic()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, min(wait, 3600.0)))
            except TimeoutError:
                pass

    async def _run(self, task: PeriodicTask) -> None:
        async with self._lock:
            rt = self.reloader.current
            start = time.time()
            try:
                said = await asyncio.to_thread(task.run, rt)
                ok = True
            except PostroomError as e:  # a failure the task explains itself
                said, ok = str(e), False
            except Exception as e:  # a task's failure is reported, never fatal to serve
                said = f"{type(e).__name__}: {e}"
                ok = False
                log.error("periodic task %s failed:\n%s", task.name, traceback.format_exc())
            end = time.time()
            entry = {"start": start, "end": end, "ok": ok, "said": said}
            previous = self.state.get(task.name, {})
            entry["last_ok"] = end if ok else previous.get("last_ok")
            self.state[task.name] = entry
            maillog.event(f"{task.name}: {'done' if ok else 'FAILED'}: {said}")
            self._save()

    def _save(self) -> None:
        try:
            atomic_replace(self.state_dir / STATE_NAME,
                         json.dumps(self.state, indent=1, sort_keys=True).encode())
        except OSError as e:
            log.error("cannot record periodic state in %s: %s", self.state_dir, e)
