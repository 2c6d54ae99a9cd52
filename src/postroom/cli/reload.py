"""``postroom reload``: check the profile and maps, then make the running server reload
and say what it did."""

from __future__ import annotations

import sys

import click

from postroom.cli.options import site_option
from postroom.errors import EX_CONFIG, EX_UNAVAILABLE, PostroomError


@click.command()
@site_option
def reload(site_dir: str | None) -> None:
    """Re-read the profile and maps in the running server (last good wins).

    A broken file is reported with its file and line, and the server keeps the last good
    version in force. The answer names every changed key: in force now, or needing a
    restart (listener addresses and ports, the number of intake processes).
    """
    from postroom import control, runtime

    try:
        rt = runtime.build(site_dir)
    except PostroomError as e:
        click.echo(f"postroom: {e}", err=True)
        click.echo("postroom: nothing reloaded; the last good version stays in force", err=True)
        sys.exit(EX_CONFIG)
    for warning in rt.maps.warnings:
        click.echo(f"warning: {warning}", err=True)
    counts = ", ".join(f"{k} {v}" for k, v in rt.maps.counts().items())
    reply = control.request(rt.site.state_dir, "reload")
    if reply is None:
        click.echo(f"maps good ({counts}); no server running")
        return
    if not reply.get("ok"):
        click.echo(f"postroom: the server did not reload: {reply.get('error')}", err=True)
        click.echo("postroom: the last good version stays in force", err=True)
        sys.exit(EX_CONFIG if "error" in reply else EX_UNAVAILABLE)
    click.echo(f"maps good ({counts}); server reloaded")
    live, restart = reply.get("live", []), reply.get("restart", [])
    if live:
        click.echo(f"in force now: {', '.join(live)}")
    if restart:
        click.echo(f"needs a restart to take effect (postroom serve): {', '.join(restart)}")
    if not live and not restart:
        click.echo("no profile key changed")
