"""``postroom check [--json]``: the post-restore checklist, pass/warn/fail per item."""

from __future__ import annotations

import json
import sys

import click

from postroom.cli.options import reports_errors, site_option

MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


@click.command(short_help="Check the site: profile, store, lists, DNS, certificate, queue.")
@site_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@reports_errors
def check(site_dir: str | None, as_json: bool) -> None:
    """Go through the checklist of a site that is to take mail: the profile and maps, the
    store and its schema, each list with its members and archive, the [check] probe
    addresses, DNS of the service names, the submission certificate, quiescent mode, the
    queue, and the last export and backup. Exit 1 if any item fails."""
    from postroom.ops.check import run_checks
    from postroom.serve.periodic import read_state
    from postroom.site.load import resolve_home

    home = resolve_home(site_dir)
    items = run_checks(home, read_state(home / "state"))
    failed = [i for i in items if i.status == "fail"]
    if as_json:
        click.echo(json.dumps({"ok": not failed, "items": [i.as_dict() for i in items]},
                              indent=1))
    else:
        for i in items:
            click.echo(f"{MARK[i.status]}  {i.name}: {i.detail}")
            if i.fix and i.status != "pass":
                click.echo(f"      fix: {i.fix}")
        warned = sum(1 for i in items if i.status == "warn")
        click.echo(f"{len(items)} checked: {len(failed)} failed, {warned} warnings")
    if failed:
        sys.exit(1)
