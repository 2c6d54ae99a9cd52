"""Membership sync: make a list's members exactly the addresses of a source.

A source is a file, or the output of a command (the seed's crons fetched membership files
from a version-control repository over ssh), read as member lines::

    # comments and blank lines are skipped; so is anything after " #"
    alice@inf.example.ac.uk
    Bob Smith <bob@inf.example.ac.uk>
    "Smith, Carol" <carol@inf.example.ac.uk>

The sync is refused, and nobody is added or removed, when

    * a line is not an address (each reported as ``FILE:LINE: 'text': why``),
    * the command fails (its exit status and last line of stderr are reported),
    * the result is empty, or
    * the list would shrink by more than ``max_shrink`` per cent of its members.

Otherwise members not in the source are removed, new ones added (delivery on, regular mode,
not moderated), and a display name given in the source replaces the stored one; all in one
transaction. ``plan_sync`` is the pure part (set differences in Python); ``sync_members``
reads the list, plans, and applies unless refused or a dry run.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from sqlalchemy import Connection, Table, bindparam

from postroom.errors import EX_DATAERR, EX_UNAVAILABLE, PostroomError
from postroom.lists.model import Member
from postroom.lists.store import (
    Progress,
    current_members,
    delete_members,
    insert_members,
    list_id_of,
    with_connection,
)
from postroom.store import StoreValueError
from postroom.store.lists import check_address
from postroom.store.models import ListMember

if TYPE_CHECKING:
    from postroom.site import Site

__all__ = [
    "DEFAULT_MAX_SHRINK",
    "SourceError",
    "SyncPlan",
    "parse_members",
    "plan_sync",
    "read_command",
    "read_file",
    "sync_members",
]

DEFAULT_MAX_SHRINK = 50.0   # per cent
COMMAND_TIMEOUT = 600.0     # seconds

_ANGLE = re.compile(r'^(?P<name>.*?)\s*<(?P<addr>[^<>]*)>$')
_COMMENT = re.compile(r"(?:^|\s)#.*$")


class SourceError(PostroomError):
    """The source cannot be used: bad lines or a failing command; nobody was removed."""

    exit_code = EX_DATAERR


class CommandFailed(SourceError):
    exit_code = EX_UNAVAILABLE


def _name(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text.strip()


def parse_line(line: str) -> tuple[str, str] | None:
    """(address, display name) of one member line; None for a blank or comment line.
    StoreValueError says what is wrong with a bad one."""
    text = _COMMENT.sub("", line).strip() if "#" in line else line.strip()
    if not text:
        return None
    if "<" in text or ">" in text:
        match = _ANGLE.match(text)
        if match is None:
            raise StoreValueError("write ADDRESS or Display Name <ADDRESS>")
        name, address = _name(match["name"]), match["addr"]
    else:
        name, address = "", text
    if not address.strip():
        raise StoreValueError("no address between < and >")
    if any(ch.isspace() for ch in address.strip()):
        raise StoreValueError("write one address a line (a display name goes before "
                              "<ADDRESS>)")
    return check_address(address), name[:255]


def parse_members(lines: Iterable[str], source: str) -> tuple[list[Member], list[str]]:
    """The members of ``lines`` (a repeated address counts once, the first name wins) and
    the errors, one per bad line as ``SOURCE:LINE: 'text': why``."""
    members: dict[str, Member] = {}
    errors: list[str] = []
    for number, line in enumerate(lines, 1):
        try:
            parsed = parse_line(line)
        except StoreValueError as e:
            errors.append(f"{source}:{number}: {line.strip()!r}: {e}")
            continue
        if parsed is not None and parsed[0] not in members:
            members[parsed[0]] = Member(parsed[0], parsed[1])
    return list(members.values()), errors


def read_file(path: str | Path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}; nobody was removed") from None


def read_command(command: str, timeout: float = COMMAND_TIMEOUT) -> list[str]:
    """The output lines of ``command`` (run by the shell); CommandFailed when it cannot be
    run, times out or exits non-zero (an incomplete list must never remove anyone)."""
    try:
        done = subprocess.run(command, shell=True, capture_output=True, text=True,
                              errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"command {command!r} did not finish in {timeout:g} s; "
                            "nobody was removed") from None
    except OSError as e:
        raise CommandFailed(f"command {command!r} could not run: {e.strerror}; "
                            "nobody was removed") from None
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()
        last = f": {why[-1]}" if why else ""
        status = (f"was killed by signal {-done.returncode}" if done.returncode < 0
                  else f"exited with status {done.returncode}")
        raise CommandFailed(f"command {command!r} {status}{last}; nobody was removed")
    return done.stdout.splitlines()


@dataclass(slots=True)
class SyncPlan:
    before: int                                   # members now
    after: int                                    # members the source names
    add: list[Member] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    rename: list[Member] = field(default_factory=list)  # a new display name
    refused: str = ""                             # why nothing may change; "" = fine
    applied: bool = False

    @property
    def changes(self) -> int:
        return len(self.add) + len(self.remove) + len(self.rename)


def plan_sync(have: dict[str, str], wanted: Sequence[Member],
              max_shrink: float = DEFAULT_MAX_SHRINK,
              allow: str = "give --max-shrink PERCENT") -> SyncPlan:
    """The diff from ``have`` (address -> display name) to ``wanted``, and the guard."""
    want = {m.address: m for m in wanted}
    plan = SyncPlan(before=len(have), after=len(want))
    plan.add = sorted((m for a, m in want.items() if a not in have), key=lambda m: m.address)
    plan.remove = sorted(have.keys() - want.keys())
    plan.rename = sorted((m for a, m in want.items()
                          if a in have and m.display_name and m.display_name != have[a]),
                         key=lambda m: m.address)
    if not want:
        plan.refused = "the source has no addresses"
    elif plan.before and (plan.before - plan.after) * 100 > max_shrink * plan.before:
        shrink = 100.0 * (plan.before - plan.after) / plan.before
        plan.refused = (f"the list would shrink from {plan.before} to {plan.after} members "
                        f"(-{shrink:.0f} %, more than the {max_shrink:g} % allowed; "
                        f"fix: check the source, or {allow})")
    return plan


def _rename(conn: Connection, list_id: int, members: Sequence[Member]) -> None:
    if not members:
        return
    table = cast(Table, ListMember.__table__)
    stmt = (table.update()
            .where(table.c.list_id == bindparam("b_list"), table.c.address == bindparam("b_addr"))
            .values(display_name=bindparam("b_name")))
    conn.execute(stmt, [{"b_list": list_id, "b_addr": m.address, "b_name": m.display_name}
                        for m in members])


def sync_members(site: Site, name: str, domain: str, wanted: Sequence[Member], *,
                 dry_run: bool = False, max_shrink: float = DEFAULT_MAX_SHRINK,
                 allow: str = "give --max-shrink PERCENT",
                 progress: Callable[[int], Progress | None] | None = None) -> SyncPlan:
    """Plan the sync against the list as it is, and apply it in the same transaction
    unless it is refused or ``dry_run``. ``progress(total)`` may give a callback that is
    told how many rows each step wrote."""

    def work(conn: Connection) -> SyncPlan:
        with conn.begin():
            list_id = list_id_of(conn, name, domain)
            plan = plan_sync(current_members(conn, list_id), wanted, max_shrink, allow)
            if plan.refused or dry_run or not plan.changes:
                return plan
            tick = progress(plan.changes) if progress is not None else None
            delete_members(conn, list_id, plan.remove, tick)
            insert_members(conn, list_id, plan.add, tick)
            _rename(conn, list_id, plan.rename)
            if tick is not None:
                tick(len(plan.rename))
            plan.applied = True
            return plan

    result: SyncPlan = with_connection(site, work)
    return result
