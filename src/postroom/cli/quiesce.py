"""``postroom quiesce`` / ``resume`` / ``status``.

While quiescent, every listener answers 421 4.3.2 at greeting (senders keep the mail and
retry; nothing is rejected), nothing is delivered and no list post goes out. The flag is a
file in SITE/state/, so it survives restarts; ``quiescent = true`` in the profile does the
same for a site being rebuilt.
"""

from __future__ import annotations

import json
import sys

import click

from postroom.cli.options import reports_errors, site_option


def _flag(site_dir: str | None):  # type: ignore[no-untyped-def]
    from postroom import site as site_mod

    s = site_mod.load(site_dir)
    s.state_dir.mkdir(parents=True, exist_ok=True)
    return s, s.state_dir / "quiescent"


@click.command()
@site_option
@click.option("--reason", default="", help="Why (shown by postroom status).")
@reports_errors
def quiesce(site_dir: str | None, reason: str) -> None:
    """Stop taking and delivering mail without rejecting any (421 at greeting)."""
    from postroom import maillog

    s, flag = _flag(site_dir)
    flag.write_text(reason + "\n")
    maillog.open_log(s.log_path, s.profile.site.hostname)
    maillog.event(f"quiescent: {reason or 'by postroom quiesce'}")
    click.echo("quiescent: listeners answer 421 4.3.2, no delivery, no list posts")


@click.command()
@site_option
@reports_errors
def resume(site_dir: str | None) -> None:
    """Leave quiescent mode (the profile's quiescent = true still wins)."""
    from postroom import maillog

    s, flag = _flag(site_dir)
    flag.unlink(missing_ok=True)
    maillog.open_log(s.log_path, s.profile.site.hostname)
    maillog.event("resumed: taking and delivering mail")
    if s.profile.site.quiescent:
        click.echo("still quiescent: the profile says quiescent = true", err=True)
        sys.exit(1)
    click.echo("accepting and delivering mail")


@click.command()
@site_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@reports_errors
def status(site_dir: str | None, as_json: bool) -> None:
    """Is the server running, is the site quiescent, how big is the queue."""
    s, flag = _flag(site_dir)
    pid = s.server_pid()
    why = ""
    if s.profile.site.quiescent:
        why = "profile says quiescent = true"
    elif flag.exists():
        why = flag.read_text().strip() or "postroom quiesce"
    queued = sum(1 for _ in (s.queue_dir / "active").glob("*")) \
        if (s.queue_dir / "active").is_dir() else 0
    info = {"site": str(s.home), "running": pid is not None, "pid": pid,
            "quiescent": s.quiescent, "quiescent_reason": why, "queued": queued}
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"site: {s.home}")
    click.echo(f"server: {'running, pid ' + str(pid) if pid else 'not running'}")
    click.echo(f"mode: {'QUIESCENT (' + why + ')' if s.quiescent else 'accepting mail'}")
    click.echo(f"queue: {queued} message(s)")
