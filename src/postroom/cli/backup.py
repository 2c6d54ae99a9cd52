"""``postroom backup DEST``, ``postroom backup list DEST``, ``postroom backup verify DEST``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from postroom.cli.options import reports_errors, site_option

if TYPE_CHECKING:
    from postroom.ops.snapshot import Progress

DEST = click.Path(file_okay=False, path_type=Path)


class _TakeByDefault(click.Group):
    """``postroom backup DEST`` means ``postroom backup take DEST``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["take", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_TakeByDefault,
             short_help="Back up the site home to a new generation in DEST; list, verify.")
def backup() -> None:
    """Back up the site home: 'postroom backup DEST' writes a new generation in DEST
    beside the old ones, verifies it, then makes it the latest ('DEST/latest').
    'postroom backup list DEST' and 'postroom backup verify DEST' look at what is there.
    With --to, the generation is pushed to a mirror, which is then pruned like DEST."""


@contextmanager
def _progress(show: bool | None) -> Iterator[Progress | None]:
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("backup"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=Console(stderr=True),
                  transient=True) as bar:
        task = bar.add_task("", total=None)

        def update(what: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=what[-40:])

        yield update


@backup.command(short_help="Take a new generation (the default: postroom backup DEST).")
@site_option
@click.argument("dest", type=DEST)
@click.option("--keep", type=click.IntRange(1), default=None,
              help="Generations to keep (default: [backup] keep, 7).")
@click.option("--max-shrink", type=click.FloatRange(0, 100), default=None, metavar="PERCENT",
              help="Do not promote a generation this much smaller than the latest "
                   "(default: [backup] max_shrink, 50).")
@click.option("--force", is_flag=True, help="Promote it even if it is much smaller.")
@click.option("--to", "mirrors", multiple=True, metavar="TARGET",
              help="Then push it with rsync to rsync://HOST/MODULE/PATH or HOST:PATH "
                   "and prune the mirror to --keep too (repeatable).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when stderr is a terminal).")
@reports_errors
def take(site_dir: str | None, dest: Path, keep: int | None, max_shrink: float | None,
         force: bool, mirrors: tuple[str, ...], progress: bool | None) -> None:
    """Write a new generation of the site home into DEST while the server runs, verify
    it against its manifest, then point DEST/latest at it and prune old generations;
    then push it to each --to mirror and prune the mirror the same way."""
    from postroom import site as site_mod
    from postroom.ops.backup import backup as take_backup

    site = site_mod.load(site_dir)
    with _progress(progress) as update:
        result = take_backup(site, dest, keep=keep, max_shrink=max_shrink, force=force,
                             to=mirrors, progress=update)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(result.summary())


@backup.command("list", short_help="List the generations in DEST or on a mirror.")
@click.argument("dest")
@reports_errors
def list_(dest: str) -> None:
    """One line per generation: name, files, bytes, queued messages, status. DEST may be
    a mirror (rsync://HOST[:PORT]/MODULE/PATH or HOST:PATH): then name and status, as
    rsync lists it (latest, verified, UNVERIFIED: a push that failed or is running)."""
    from postroom.ops import mirror
    from postroom.ops.generations import generations

    if mirror.is_target(dest):
        remote = mirror.generations(dest)
        if not remote:
            click.echo(f"{dest}: no generations")
        for r in remote:
            click.echo(f"{r.name}  {r.status}")
        return
    found = generations(Path(dest))
    if not found:
        click.echo(f"{dest}: no generations")
        return
    for g in found:
        m = g.manifest
        if m is None:
            click.echo(f"{g.name}  -  {g.status}")
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.created))
        click.echo(f"{g.name}  {when}  {len(m.files)} files  {m.total_bytes} bytes  "
                   f"{len(m.queue)} queued  store {m.store}  {g.status}")


@backup.command(short_help="Check generations against their manifests.")
@click.argument("dest", type=DEST)
@click.argument("generations", nargs=-1)
@reports_errors
def verify(dest: Path, generations: tuple[str, ...]) -> None:
    """Read every file of each generation (all, or those named) and compare its size and
    SHA-256 with the manifest; exit 65 if any generation is damaged."""
    from postroom.errors import EX_DATAERR
    from postroom.ops.backup import verify as check

    bad = 0
    for name, problems in check(dest, generations).items():
        if not problems:
            click.echo(f"{name}: ok")
            continue
        bad += 1
        click.echo(f"{name}: DAMAGED")
        for p in problems:
            click.echo(f"  {p}")
    if bad:
        click.echo(f"postroom: {bad} damaged generation(s) in {dest}; do not restore "
                   "from them", err=True)
        sys.exit(EX_DATAERR)
