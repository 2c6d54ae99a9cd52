"""``postroom tasks [run NAME]``: the work ``serve`` does on a schedule (the address export,
digests, held posts, list syncs, backups, alerts), when each last ran and what it said;
``run NAME`` has the running server do one now and waits for it."""

from __future__ import annotations

import sys
import time

import click

from postroom.cli.options import reports_errors, site_option
from postroom.errors import EX_SOFTWARE, EX_UNAVAILABLE


def _when(t: float | None) -> str:
    if not t:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@click.group(invoke_without_command=True,
             short_help="Scheduled work of serve: last runs; run one now.")
@site_option
@click.pass_context
@reports_errors
def tasks(ctx: click.Context, site_dir: str | None) -> None:
    """The periodic tasks of 'postroom serve': for each, when it last ran, whether it
    succeeded, when it last succeeded and what it said (from state/periodic.json, so it
    works while serve is stopped too)."""
    ctx.obj = site_dir
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from postroom import runtime
    from postroom.serve.periodic import read_state
    from postroom.serve.tasks import TASKS

    rt = runtime.build(site_dir)
    state = read_state(rt.site.state_dir)
    table = Table("task", "every", "last run", "result", "last success", "said",
                  box=None, pad_edge=False)
    for task in TASKS:
        every = task.every(rt)
        s = state.get(task.name, {})
        result = "-" if not s else ("ok" if s.get("ok") else "FAILED")
        table.add_row(task.name, "off" if every is None else f"{every:g}s",
                      _when(s.get("start")), result, _when(s.get("last_ok")),
                      str(s.get("said", "")))
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


@tasks.command(short_help="Have the running server run task NAME now.")
@site_option
@click.argument("name")
@click.pass_obj
@reports_errors
def run(group_site: str | None, site_dir: str | None, name: str) -> None:
    """Run periodic task NAME in the running server now and print what it said; exit 1
    when it failed, 69 when no server runs."""
    from postroom import control
    from postroom import site as site_mod

    site = site_mod.load(site_dir or group_site)
    reply = control.request(site.state_dir, "run", name, timeout=3600)
    if reply is None:
        click.echo("postroom: no server running for this site (start 'postroom serve')",
                   err=True)
        sys.exit(EX_UNAVAILABLE)
    if "said" not in reply:
        click.echo(f"postroom: {reply.get('error', reply)}", err=True)
        sys.exit(EX_SOFTWARE)
    click.echo(f"{name}: {'done' if reply.get('ok') else 'FAILED'}: {reply['said']}")
    if not reply.get("ok"):
        sys.exit(1)
