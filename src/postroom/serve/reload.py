"""Reload that tells the truth, and the control commands a server answers.

A reload re-reads the profile, the maps and the lists; if any file is bad the last good
set stays in force and the answer says which file and line. Otherwise every service
applies the new runtime, the mail log is opened again (log rotation), and the answer
names each changed key, split into those now in force and those that need a restart
(``runtime.RESTART_KEYS``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from postroom import control, maillog
from postroom.errors import PostroomError
from postroom.runner import QueueRunner
from postroom.runtime import Reloader, changed_keys, needs_restart
from postroom.serve.periodic import PeriodicService
from postroom.serve.services import Service

log = logging.getLogger("postroom.serve")


def apply(reloader: Reloader, services: Sequence[Service], *,
          quiet: bool = False) -> control.Reply:
    """Reload and apply; ``quiet`` in intake processes (the master reports for all)."""
    old = reloader.current
    if not reloader.reload():
        if not quiet:
            maillog.event(f"reload failed, last good version stays: {reloader.last_error}")
            log.error("reload failed: %s", reloader.last_error)
        return {"ok": False, "error": reloader.last_error}
    new = reloader.current
    for s in services:
        s.reload(old, new)
    maillog.open_log(new.site.log_path, new.site.profile.site.hostname)
    keys = changed_keys(old.site, new.site)
    restart = [k for k in keys if needs_restart(k)]
    live = [k for k in keys if not needs_restart(k)]
    if not quiet:
        said = "reload: profile and maps reloaded"
        if live:
            said += f"; in force now: {', '.join(live)}"
        if restart:
            said += f"; needs a restart: {', '.join(restart)}"
        maillog.event(said)
    return {"ok": True, "live": live, "restart": restart,
            "maps": new.maps.counts(), "warnings": list(new.maps.warnings)}


def commands(reloader: Reloader, services: Sequence[Service], runner: QueueRunner, *,
             after_reload: Callable[[], None] | None = None,
             status: Callable[[], control.Reply] | None = None,
             periodic: PeriodicService | None = None,
             approve: Callable[[int], Awaitable[str]] | None = None,
             ) -> dict[str, control.Command]:
    """The control channel's commands for a server whose delivery runs ``runner``;
    ``approve``: its list engine's, for held posts approved from a command or the web."""

    def do_reload() -> control.Reply:
        reply = apply(reloader, services)
        if reply["ok"] and after_reload is not None:
            after_reload()
        return reply

    def flush(qid: str = "") -> control.Reply:
        runner.flush(qid or None)
        return {"ok": True}

    def new(qid: str) -> control.Reply:
        runner.notify(qid)
        return {"ok": True}

    def lists() -> control.Reply:
        reloader.refresh_lists()
        if after_reload is not None:
            after_reload()
        if periodic is not None:
            periodic.changed()
        return {"ok": True}

    def state() -> control.Reply:
        return status() if status is not None else {"ok": True}

    async def run(name: str) -> control.Reply:
        if periodic is None or name not in periodic.tasks:
            known = ", ".join(sorted(periodic.tasks)) if periodic is not None else "none"
            return {"ok": False, "error": f"no periodic task {name!r} (tasks: {known})"}
        return {"ok": True, "task": name, **await periodic.run_now(name)}

    async def approve_held(held_id: str) -> control.Reply:
        if approve is None:
            return {"ok": False, "error": "this server runs no list engine"}
        if not held_id.isdigit():
            return {"ok": False, "error": f"bad held post id {held_id!r}"}
        try:
            return {"ok": True, "queued": await approve(int(held_id))}
        except PostroomError as e:
            return {"ok": False, "error": str(e)}

    return {"reload": do_reload, "flush": flush, "new": new, "lists": lists,
            "status": state, "run": run, "approve": approve_held}
