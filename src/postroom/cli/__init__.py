"""The ``postroom`` command. Subcommands live one group per module and are imported only
when run, so ``postroom verify`` starts fast."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from postroom.errors import PostroomError

# name -> "module:attribute"; the module is imported when the command runs
COMMANDS = {
    "init": "postroom.cli.init:init",
    "verify": "postroom.cli.verify:verify",
    "reload": "postroom.cli.reload:reload",
    "db": "postroom.cli.db:db",
    "users": "postroom.cli.users:users",
    "lists": "postroom.cli.lists:lists",
    "members": "postroom.cli.members:members",
    "held": "postroom.cli.held:held",
    "serve": "postroom.cli.serve:serve",
    "queue": "postroom.cli.queue:queue",
    "quiesce": "postroom.cli.quiesce:quiesce",
    "resume": "postroom.cli.quiesce:resume",
    "status": "postroom.cli.quiesce:status",
    "export-addresses": "postroom.cli.export:export_addresses",
    "tasks": "postroom.cli.tasks:tasks",
    "web-admin": "postroom.cli.web_admin:web_admin",
    "dkim": "postroom.cli.deliverability:dkim",
    "srs": "postroom.cli.deliverability:srs",
    "backup": "postroom.cli.backup:backup",
    "restore": "postroom.cli.restore:restore",
    "check": "postroom.cli.check:check",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        try:
            cmd: click.Command = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if e.name == module:
                return None
            raise
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's summary whole, wrapped when long: click's own listing cuts a
        summary that does not fit the terminal at "...", mid-sentence."""
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=sys.maxsize)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="postroom")
def cli() -> None:
    """postroom: the department's mail service (hub, relay, submission, queue, lists)."""


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="postroom", standalone_mode=True)
    except PostroomError as e:  # pragma: no cover - commands catch their own
        click.echo(f"postroom: {e}", err=True)
        sys.exit(e.exit_code)
