"""``postroom reload``: re-read the profile and maps; tell a running server."""

from __future__ import annotations

import os
import signal
import sys

import click

from postroom.cli.options import site_option
from postroom.errors import EX_CONFIG, PostroomError


@click.command()
@site_option
def reload(site_dir: str | None) -> None:
    """Check the profile and every map; if all are good, make the running server reload.

    A broken file is reported with its file and line, and the server keeps the last
    good version in force.
    """
    from postroom import runtime

    try:
        rt = runtime.build(site_dir)
    except PostroomError as e:
        click.echo(f"postroom: {e}", err=True)
        click.echo("postroom: nothing reloaded; the last good version stays in force", err=True)
        sys.exit(EX_CONFIG)
    for warning in rt.maps.warnings:
        click.echo(f"warning: {warning}", err=True)
    counts = ", ".join(f"{k} {v}" for k, v in rt.maps.counts().items())
    pid = rt.site.server_pid()
    if pid is None:
        click.echo(f"maps good ({counts}); no server running")
        return
    os.kill(pid, signal.SIGHUP)
    click.echo(f"maps good ({counts}); server {pid} told to reload")
