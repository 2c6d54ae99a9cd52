"""``postroom verify ADDR...``: sendmail -bv."""

from __future__ import annotations

import sys

import click

from postroom.cli.options import reports_errors, site_option
from postroom.errors import EX_NOUSER


@click.command(short_help="Show where each address goes, like sendmail -bv.")
@site_option
@click.option("--explain", is_flag=True, help="Show every map, file and line used.")
@click.option("--sender", "-f", default=None, metavar="ADDR",
              help="With --explain: show the SRS rewrite mail from ADDR gets when forwarded.")
@click.argument("addresses", nargs=-1, required=True)
@reports_errors
def verify(site_dir: str | None, explain: bool, sender: str | None,
           addresses: tuple[str, ...]) -> None:
    """Show where each ADDRESS goes, in sendmail -bv form (exit 67 if any is undeliverable)."""
    sys.exit(run_verify(site_dir, addresses, explain, sender))


def run_verify(site_dir: str | None, addresses: tuple[str, ...] | list[str],
               explain: bool = False, sender: str | None = None) -> int:
    from postroom.runtime import load_resolver

    resolver = load_resolver(site_dir)
    status = 0
    for address in addresses:
        res = resolver.resolve(address, explain=explain, sender=sender)
        if explain:
            for step in res.steps:
                click.echo(f"{'  ' * step.depth}{step.text}")
        for route in res.routes:
            click.echo(route.sendmail_line())
        if not res.deliverable:
            status = EX_NOUSER
    return status
