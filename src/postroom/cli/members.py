"""``postroom members add|remove|list|sync|import``: the members of a mailing list.

Every command is one transaction: a bad address (reported as FILE:LINE) or a refused sync
changes nothing. Long imports and syncs show a progress bar when stderr is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from postroom.cli.options import reports_errors, site_option
from postroom.errors import EX_DATAERR

if TYPE_CHECKING:
    from postroom.lists.model import Member

PROGRESS_FROM = 2000  # rows; smaller jobs finish before a bar would be seen


@click.group(short_help="Members of mailing lists: add, remove, list, sync, import.")
def members() -> None:
    """Members of a mailing list. LIST is NAME@DOMAIN, or NAME when one list has it."""


def _fail(lines: Sequence[str], summary: str) -> None:
    for line in lines[:50]:
        click.echo(f"postroom: {line}", err=True)
    if len(lines) > 50:
        click.echo(f"postroom: ... and {len(lines) - 50} more", err=True)
    click.echo(f"postroom: {summary}", err=True)
    sys.exit(EX_DATAERR)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int], Callable[[int], None] | None]]:
    """``start(total)`` -> a callback advancing a rich bar on a terminal, else None."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  transient=True) as bar:
        def start(total: int) -> Callable[[int], None] | None:
            if total < PROGRESS_FROM:
                return None
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        yield start


def _read_addresses(addresses: Sequence[str], file: str | None, moderated: bool,
                    digest: bool, plain: bool = False) -> tuple[list[Member], list[str]]:
    from postroom.lists.model import DeliveryMode, Member
    from postroom.lists.sync import parse_members, read_file

    found, errors = parse_members(addresses, "argument")
    if file is not None:
        lines = sys.stdin.read().splitlines() if file == "-" else read_file(file)
        more, more_errors = parse_members(lines, "stdin" if file == "-" else file)
        found += more
        errors += more_errors
    mode = (DeliveryMode.PLAIN_DIGEST if plain else DeliveryMode.MIME_DIGEST if digest
            else DeliveryMode.REGULAR)
    return [Member(m.address, m.display_name, True, mode, moderated) for m in found], errors


@members.command(short_help="Add members: ADDR... and/or --file F.")
@site_option
@click.argument("address", metavar="LIST")
@click.argument("addresses", metavar="ADDR...", nargs=-1)
@click.option("--file", "file", metavar="F",
              help="Also the addresses in F, one a line ('Name <addr>' too; - for stdin).")
@click.option("--moderated", is_flag=True, help="Hold the new members' posts.")
@click.option("--digest", is_flag=True, help="Deliver to the new members as MIME digests.")
@click.option("--plain-digest", is_flag=True,
              help="Deliver to the new members as plain-text (RFC 1153) digests.")
@reports_errors
def add(site_dir: str | None, address: str, addresses: tuple[str, ...], file: str | None,
        moderated: bool, digest: bool, plain_digest: bool) -> None:
    """Add members to LIST; those already members are left as they are."""
    from postroom import site as site_mod
    from postroom.lists.store import add_members, find_list

    site = site_mod.load(site_dir)
    name, domain = find_list(site, address)
    new, errors = _read_addresses(addresses, file, moderated, digest, plain_digest)
    if errors:
        _fail(errors, f"nobody added to {name}@{domain} (fix the lines above)")
    if not new:
        raise click.UsageError("give addresses, or --file F")
    with _progress("adding") as start:
        result = add_members(site, name, domain, new, progress=start(len(new)))
    for a in result.existing:
        click.echo(f"= {a} (already a member)")
    click.echo(f"{name}@{domain}: {len(result.added)} added, "
               f"{len(result.existing)} already members")


@members.command(short_help="Remove members: ADDR...")
@site_option
@click.argument("address", metavar="LIST")
@click.argument("addresses", metavar="ADDR...", nargs=-1, required=True)
@reports_errors
def remove(site_dir: str | None, address: str, addresses: tuple[str, ...]) -> None:
    """Remove members from LIST (an address that is not a member is reported)."""
    from postroom import site as site_mod
    from postroom.lists.store import find_list, remove_members

    site = site_mod.load(site_dir)
    name, domain = find_list(site, address)
    removed, missing = remove_members(site, name, domain, addresses)
    for a in missing:
        click.echo(f"postroom: {a} is not a member of {name}@{domain}", err=True)
    click.echo(f"{name}@{domain}: {len(removed)} removed")


@members.command(short_help="Turn delivery on again for ADDR... (after bounces).")
@site_option
@click.argument("address", metavar="LIST")
@click.argument("addresses", metavar="ADDR...", nargs=-1, required=True)
@reports_errors
def enable(site_dir: str | None, address: str, addresses: tuple[str, ...]) -> None:
    """Turn delivery on again for members whose delivery bounce processing turned off
    (their bounce score starts again from zero)."""
    from postroom import site as site_mod
    from postroom.lists.bounces import reenable
    from postroom.lists.store import find_list, settings_for

    site = site_mod.load(site_dir)
    name, domain = find_list(site, address)
    s = settings_for(site, f"{name}@{domain}")
    assert s is not None
    missing = [a for a in addresses if not reenable(site, s, a)]
    for a in missing:
        click.echo(f"{a}: not a member of {name}@{domain}", err=True)
    click.echo(f"{name}@{domain}: delivery on for {len(addresses) - len(missing)} member(s)")
    if missing:
        sys.exit(1)


@members.command("list", short_help="List the members, a page at a time.")
@site_option
@click.argument("address", metavar="LIST")
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--per-page", default=100, show_default=True, type=click.IntRange(1, 10000))
@click.option("--search", default="", metavar="TEXT",
              help="Only members whose address or name contains TEXT.")
@reports_errors
def list_(site_dir: str | None, address: str, page: int, per_page: int, search: str) -> None:
    """Print the members of LIST in address order: delivery, mode, moderated, bounce score."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from postroom import site as site_mod
    from postroom.lists.listing import page_members
    from postroom.lists.store import find_list

    site = site_mod.load(site_dir)
    name, domain = find_list(site, address)
    found = page_members(site, name, domain, page, per_page, search)
    if not found.total:
        click.echo(f"{name}@{domain}: no members" + (f" matching {search!r}" if search else ""))
        return
    table = Table("address", "name", "delivery", "mode", "moderated", "bounces",
                  box=box.SIMPLE, caption=f"{found.total} members, page {page} of {found.pages}")
    for m in found.members:
        table.add_row(m.address, m.display_name, "on" if m.delivery_enabled else "off",
                      m.mode.value, "yes" if m.moderated else "no", f"{m.bounce_score:g}")
    Console(soft_wrap=False, width=200).print(table)


@members.command(short_help="Make the members exactly those of FILE or --command.")
@site_option
@click.argument("address", metavar="LIST")
@click.argument("file", metavar="FILE", required=False)
@click.option("--command", "command", metavar="CMD",
              help="Run CMD (by the shell) and sync from its output instead of FILE.")
@click.option("--dry-run", is_flag=True, help="Print the diff; change nothing.")
@click.option("--max-shrink", default=50.0, show_default=True, metavar="PERCENT",
              type=click.FloatRange(0, 100),
              help="Refuse a sync that would remove more than PERCENT of the members.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary, not the diff.")
@reports_errors
def sync(site_dir: str | None, address: str, file: str | None, command: str | None,
         dry_run: bool, max_shrink: float, quiet: bool) -> None:
    """Make LIST's members exactly the addresses of FILE (one a line, 'Name <addr>' too,
    # comments), printing the diff (+ added, - removed, ~ new name). Bad lines, a failing
    command, an empty result or one that shrinks the list by more than --max-shrink are
    reported, and nobody is added or removed."""
    from postroom import site as site_mod
    from postroom.lists.store import find_list
    from postroom.lists.sync import parse_members, read_command, read_file, sync_members

    if (file is None) == (command is None):
        raise click.UsageError("give FILE or --command CMD (one of them)")
    site = site_mod.load(site_dir)
    name, domain = find_list(site, address)
    if command is not None:
        lines, source = read_command(command), "command output"
    else:
        assert file is not None
        lines = sys.stdin.read().splitlines() if file == "-" else read_file(file)
        source = "stdin" if file == "-" else file
    wanted, errors = parse_members(lines, source)
    if errors:
        _fail(errors, f"{name}@{domain} not synced, nobody added or removed "
                      "(fix the lines above)")
    with _progress("syncing") as start:
        plan = sync_members(site, name, domain, wanted, dry_run=dry_run,
                            max_shrink=max_shrink, progress=start)
    if not quiet:
        out = [f"+ {m.address}" for m in plan.add] + [f"- {a}" for a in plan.remove] + \
            [f"~ {m.address} ({m.display_name})" for m in plan.rename]
        if out:
            click.echo("\n".join(out))
    counts = (f"{len(plan.add)} added, {len(plan.remove)} removed, {len(plan.rename)} "
              f"renamed; {plan.before} -> {plan.after} members")
    if plan.applied or not plan.changes:
        click.echo(f"{name}@{domain}: {counts}")
    else:
        click.echo(f"{name}@{domain}: would be {counts}"
                   + (" (dry run: nothing changed)" if dry_run and not plan.refused else ""))
    if plan.refused:
        _fail([], f"{name}@{domain} not synced, nobody added or removed: {plan.refused}")


@members.command("import", short_help="Add the members of a Mailman member listing.")
@site_option
@click.argument("address", metavar="LIST")
@click.argument("file", metavar="FILE")
@click.option("--digest", is_flag=True,
              help="The listing is of digest members (list_members --digest).")
@reports_errors
def import_(site_dir: str | None, address: str, file: str, digest: bool) -> None:
    """Add the members in FILE, the output of Mailman 2 'list_members [-f] LIST' or
    Mailman 3 'mailman members LIST' (- for stdin). Members already there are kept as
    they are; a bad line imports nobody."""
    from postroom import site as site_mod
    from postroom.lists.mailman_import import parse_mailman_members
    from postroom.lists.store import add_members, find_list
    from postroom.lists.sync import read_file

    site = site_mod.load(site_dir)
    name, domain = find_list(site, address)
    lines = sys.stdin.read().splitlines() if file == "-" else read_file(file)
    found, errors = parse_mailman_members(lines, "stdin" if file == "-" else file,
                                          digest=digest)
    if errors:
        _fail(errors, f"nobody imported into {name}@{domain} (fix the lines above)")
    with _progress("importing") as start:
        result = add_members(site, name, domain, found, progress=start(len(found)))
    disabled = sum(1 for m in found if not m.delivery_enabled and m.address in result.added)
    click.echo(f"{name}@{domain}: {len(result.added)} imported"
               + (f" ({disabled} with delivery off)" if disabled else "")
               + f", {len(result.existing)} already members")
