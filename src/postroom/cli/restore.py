"""``postroom restore DEST[/GENERATION] SITE``."""

from __future__ import annotations

from pathlib import Path

import click

from postroom.cli.options import reports_errors


@click.command(short_help="Rebuild a site home from a backup generation, quiescent.")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("site", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Restore into a directory that is not empty.")
@click.option("--database-url", metavar="URL", default=None,
              help="Restore a PostgreSQL store into this database (empty, reachable) and "
                   "write it into the restored profile's [database] url.")
@reports_errors
def restore(source: Path, site: Path, force: bool, database_url: str | None) -> None:
    """Restore SOURCE (a backup destination: its latest generation; or DEST/GENERATION)
    into the site home SITE: check the generation against its manifest, copy it back,
    bring the store's schema up to date, and leave the site quiescent with a checklist
    of what to do before it takes mail again."""
    from postroom.ops.restore import restore as do_restore

    r = do_restore(source, site, force=force, database_url=database_url)
    m = r.manifest
    before, after = r.schema
    schema = "no store" if after is None else (
        f"store at {after}" if before == after else f"store upgraded {before} -> {after}")
    click.echo(f"restored {r.generation.name} ({len(m.files)} files, {len(m.queue)} queued "
               f"messages, taken on {m.hostname}) into {r.home} in {r.seconds:.1f} s; "
               f"{schema}")
    click.echo("the site is QUIESCENT: it answers 421 and delivers nothing until "
               "'postroom resume'")
    click.echo("next steps:")
    for i, step in enumerate(r.checklist, 1):
        click.echo(f"  {i}. {step}")
