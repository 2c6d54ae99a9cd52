"""The list engine's periodic work in ``serve`` (``postroom.serve.tasks``): digests that
are due, held posts to expire and remind about, and the membership syncs the profile
names (``[[lists.sync]]``). Each function runs in a thread of the master and returns
the line that ``state/periodic.json`` and the mail log keep; the mail it makes goes into
the queue through ``inject_from_command`` (durable before the function returns)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from postroom import maillog
from postroom.envelope import Envelope
from postroom.errors import PostroomError
from postroom.lists import digest, moderation
from postroom.runner.inject import inject_from_command
from postroom.runtime import Runtime


def _injector(rt: Runtime) -> Callable[[Envelope, bytes], str]:
    def inject(env: Envelope, message: bytes) -> str:
        return inject_from_command(env, message, site=rt.site)

    return inject


def digests(rt: Runtime) -> str:
    said = digest.send_due(rt, _injector(rt))
    return "; ".join(said) if said else "no digest due"


def held(rt: Runtime) -> str:
    inject = _injector(rt)
    expired, mails = moderation.expire(rt)
    reminders = moderation.remind(rt)
    for env, body in [*mails, *reminders]:
        inject(env, body)
    return f"{expired} held post(s) expired, {len(reminders)} reminder(s) sent"


def sync(rt: Runtime) -> str:
    """Every ``[[lists.sync]]`` entry; one refused or failing entry is reported and
    changes nothing, and the others still run. Raises (the task fails, and the alerts
    see it) when any entry failed."""
    from postroom.lists.store import find_list
    from postroom.lists.sync import parse_members, read_command, read_file, sync_members

    said, failed = [], []
    cfg = rt.site.profile.lists
    for entry in cfg.sync:
        try:
            name, domain = find_list(rt.site, entry.list)
            if entry.command:
                lines, source = read_command(entry.command), f"command {entry.command!r}"
            else:
                path = Path(entry.file)
                path = path if path.is_absolute() else rt.site.home / path
                lines, source = read_file(path), str(path)
            wanted, errors = parse_members(lines, source)
            if errors:
                raise PostroomError("; ".join(errors[:5])
                                    + (f" (and {len(errors) - 5} more)" if len(errors) > 5
                                       else ""))
            plan = sync_members(rt.site, name, domain, wanted,
                                max_shrink=cfg.sync_max_shrink,
                                allow="raise [lists] sync_max_shrink in the profile")
            if plan.refused:
                raise PostroomError(plan.refused)
            line = (f"{name}@{domain}: +{len(plan.add)} -{len(plan.remove)} "
                    f"~{len(plan.rename)}, {plan.after} members")
            said.append(line)
            if plan.changes:
                maillog.line(f"list sync {line}")
        except PostroomError as e:
            failed.append(f"{entry.list}: not synced, nobody added or removed: {e}")
            maillog.line(f"list sync {entry.list}: refused: {e}")
    if failed:
        raise PostroomError("; ".join(failed + said))
    return "; ".join(said)
