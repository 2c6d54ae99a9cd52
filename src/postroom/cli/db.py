"""``postroom db upgrade|current``: the store's schema."""

from __future__ import annotations

import click

from postroom.cli.options import reports_errors, site_option


@click.group()
def db() -> None:
    """The store's database: schema migrations."""


@db.command(short_help="Bring the store's schema to the newest revision.")
@site_option
@reports_errors
def upgrade(site_dir: str | None) -> None:
    """Bring the store's schema to the newest revision (creates SITE/postroom.db)."""
    from postroom import site as site_mod
    from postroom.store import db as store_db

    site = site_mod.load(site_dir)
    before, after = store_db.upgrade(site)
    where = store_db.describe(site)
    if before == after:
        click.echo(f"{where}: already at {after} (head)")
    else:
        click.echo(f"{where}: upgraded from {before or 'an empty database'} to {after} (head)")


@db.command()
@site_option
@reports_errors
def current(site_dir: str | None) -> None:
    """Print the revision the store's schema is at."""
    from postroom import site as site_mod
    from postroom.store import db as store_db

    site = site_mod.load(site_dir)
    revision = store_db.current_revision(site)
    head = store_db.head_revision()
    if revision is None:
        click.echo("none (fix: run 'postroom db upgrade')")
    elif revision == head:
        click.echo(f"{revision} (head)")
    else:
        click.echo(f"{revision} (head is {head}; fix: run 'postroom db upgrade')")
