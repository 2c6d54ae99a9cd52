"""Alerts: the first signs of trouble, told to the postmaster before the upstream relays'
staff notice mail backing up on their side.

A periodic task of ``serve`` (``[alerts] every``) looks for:

    deferred-age     the oldest deferred message has waited longer than deferred_age
    deferred-count   more than deferred_count messages are deferred
    export           the last address export failed (the shrink guard kept the old list)
    backup           the last scheduled backup failed or was not promoted

Each trouble is logged at every look (``alert: ...`` in the mail log) and mailed to the
postmaster (``[alerts] to``, else ``site.postmaster``) once per ``period`` while it lasts;
when it is over, that is logged too. The mail has the null sender (nothing bounces back
to a robot) and goes in through ``runner.inject_from_command``, so a running server
delivers it at once. What was mailed when is kept in ``state/alerts.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid
from typing import Any

from postroom import maillog
from postroom.ops.backlog import backlog
from postroom.queue import accept
from postroom.runner import inject_from_command
from postroom.runner.notices import postmaster_of
from postroom.runtime import Runtime
from postroom.safeio import atomic_replace

STATE_NAME = "alerts.json"  # in state/


@dataclass(frozen=True, slots=True)
class Trouble:
    key: str
    text: str


@dataclass(slots=True)
class Look:
    troubles: list[Trouble]
    mailed: list[str] = field(default_factory=list)   # keys mailed about in this look
    cleared: list[str] = field(default_factory=list)
    queue_id: str = ""

    def summary(self) -> str:
        if not self.troubles:
            said = "no trouble"
        else:
            said = "; ".join(f"{t.key}: {t.text}" for t in self.troubles)
        if self.mailed:
            said += f" (mailed the postmaster as {self.queue_id})"
        if self.cleared:
            said += f"; over: {', '.join(self.cleared)}"
        return said


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def troubles(rt: Runtime, periodic: dict[str, dict[str, Any]], *,
             now: float | None = None) -> list[Trouble]:
    now = time.time() if now is None else now
    a = rt.site.profile.alerts
    b = backlog(rt.site.queue_dir)
    found = []
    if b.oldest is not None and now - b.oldest > a.deferred_age:
        found.append(Trouble("deferred-age", f"the oldest deferred message has waited "
                             f"{_hours(now - b.oldest)} (more than {_hours(a.deferred_age)})"))
    if b.deferred > a.deferred_count:
        found.append(Trouble("deferred-count", f"{b.deferred} messages are deferred (more "
                             f"than {a.deferred_count})"))
    for task, what in (("export", "the address export failed"),
                       ("backup", "the scheduled backup failed")):
        entry = periodic.get(task)
        if entry is not None and entry.get("ok") is False:
            found.append(Trouble(task, f"{what}: {entry.get('said')}"))
    return found


def _read(path: Any) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _message(rt: Runtime, to: str, new: list[Trouble], now: float) -> bytes:
    host = rt.site.profile.site.hostname
    lines = [f"postroom on {host} ({rt.site.home}) found trouble:", ""]
    lines += [f"  * {t.text}" for t in new]
    lines += ["", "What to do: docs/operations.md, \"If things are not working\" and",
              "\"Alerts\". 'postroom status', 'postroom queue' and 'postroom check' show",
              "where things stand. This is mailed once a period while it lasts; every",
              "look is logged as 'alert: ...' in the mail log.", ""]
    subject = f"postroom alert on {host}: " + ", ".join(t.key for t in new)
    head = (f"From: Mail Delivery Subsystem <MAILER-DAEMON@{host}>\r\nTo: {to}\r\n"
            f"Subject: {subject}\r\nDate: {formatdate(now, localtime=True)}\r\n"
            f"Message-ID: {make_msgid('alert', domain=host)}\r\nAuto-Submitted: "
            "auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; "
            "charset=utf-8\r\n\r\n")
    return (head + "\r\n".join(lines)).encode()


def _mail(rt: Runtime, new: list[Trouble], now: float) -> str:
    to = rt.site.profile.alerts.to or postmaster_of(rt)
    routes = rt.resolver.resolve(to).routes
    recipient = accept.make_recipient(to, routes)
    if not recipient.deliveries:
        maillog.event(f"alert: cannot mail <{to}>: no deliverable route")
        return ""
    env = accept.new_envelope("", [recipient], protocol="local", client_addr="",
                              helo=rt.site.profile.site.hostname)
    return inject_from_command(env, _message(rt, to, new, now), site=rt.site)


def look(rt: Runtime, periodic: dict[str, dict[str, Any]], *,
         now: float | None = None) -> Look:
    """Log every trouble; mail the postmaster about those not mailed within the period."""
    now = time.time() if now is None else now
    path = rt.site.state_dir / STATE_NAME
    state = _read(path)
    found = troubles(rt, periodic, now=now)
    result = Look(found)
    period = rt.site.profile.alerts.period
    due = []
    for t in found:
        maillog.event(f"alert: {t.key}: {t.text}")
        entry = state.setdefault(t.key, {"since": now, "mailed": 0.0})
        entry["text"] = t.text
        if now - float(entry.get("mailed") or 0.0) >= period:
            due.append(t)
    keys = {t.key for t in found}
    for key in [k for k in state if k not in keys]:
        maillog.event(f"alert over: {key}")
        result.cleared.append(key)
        del state[key]
    if due:
        result.queue_id = _mail(rt, due, now)
        if result.queue_id:
            for t in due:
                state[t.key]["mailed"] = now
            result.mailed = [t.key for t in due]
    rt.site.state_dir.mkdir(parents=True, exist_ok=True)
    atomic_replace(path, json.dumps(state, indent=1, sort_keys=True).encode())
    return result
