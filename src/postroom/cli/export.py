"""``postroom export-addresses``: the valid-address list for the upstream relays."""

from __future__ import annotations

import gc
import sys

import click

from postroom.cli.options import reports_errors, site_option


@click.command(short_help="Export the valid addresses for the upstream relays.")
@site_option
@click.option("--max-shrink", type=click.FloatRange(0, 100), default=None, metavar="PERCENT",
              help="Keep the old files (exit 75) if the list would lose more than this "
                   "(default: [export] max_shrink, 10).")
@click.option("--force", is_flag=True, help="Write even if the list shrinks past --max-shrink.")
@click.option("--host-names", is_flag=True,
              help="Export local names in every host name too, not only site.domains.")
@reports_errors
def export_addresses(site_dir: str | None, max_shrink: float | None, force: bool,
                     host_names: bool) -> None:
    """Write SITE/export/valid-addresses.txt (one address a line) and relay_recipients
    (Postfix relay_recipient_maps: "addr OK"), atomically: every local user, alias, forward,
    hosted-domain entry, list address and list service address (-request, -owner, ...)
    that the resolver takes; a catch-all domain as @domain."""
    from postroom.ops.export import ShrinkRefused, export
    from postroom.runtime import build

    # The maps and the export are a few hundred thousand objects, none of them garbage:
    # the cycle collector's passes over them while they are built are pure cost (0.15 s
    # of 200,000 addresses, docs/performance.md). One run, so it is off while it lasts.
    collecting = gc.isenabled()
    gc.disable()
    try:
        rt = build(site_dir)
        if max_shrink is None:
            max_shrink = rt.site.profile.export.max_shrink
        try:
            result = export(rt, max_shrink=max_shrink, force=force, host_names=host_names)
        except ShrinkRefused as e:
            click.echo(f"postroom: export-addresses: {e}", err=True)
            sys.exit(e.exit_code)
        click.echo(result.summary())
    finally:
        if collecting:
            gc.enable()
