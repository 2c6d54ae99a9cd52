"""``postroom quiesce`` / ``resume`` / ``status``.

While quiescent, every listener answers 421 4.3.2 at greeting (senders keep the mail and
retry; nothing is rejected), nothing is delivered and no list post goes out. The flag is a
file in SITE/state/, so it survives restarts; ``quiescent = true`` in the profile does the
same for a site being rebuilt.

None of them needs the profile: with a broken one they warn and go on, so a site can be
quiesced, resumed and looked at while the running server keeps its last good profile.
"""

from __future__ import annotations

import json
import sys

import click

from postroom.cli.options import open_home, reports_errors, site_option


@click.command(short_help="Take and deliver no mail, rejecting none (421).")
@site_option
@click.option("--reason", default="", help="Why (shown by postroom status).")
@reports_errors
def quiesce(site_dir: str | None, reason: str) -> None:
    """Stop taking and delivering mail without rejecting any (421 at greeting)."""
    from postroom import maillog

    home = open_home(site_dir)
    home.quiesce(reason)
    maillog.open_log(home.log_path, home.hostname)
    maillog.event(f"quiescent: {reason or 'by postroom quiesce'}")
    click.echo("quiescent: listeners answer 421 4.3.2, no delivery, no list posts")


@click.command(short_help="Leave quiescent mode: take and deliver mail again.")
@site_option
@reports_errors
def resume(site_dir: str | None) -> None:
    """Leave quiescent mode (the profile's quiescent = true still wins)."""
    from postroom import maillog

    home = open_home(site_dir)
    home.resume()
    maillog.open_log(home.log_path, home.hostname)
    maillog.event("resumed: taking and delivering mail")
    if home.profile_quiescent:
        click.echo("still quiescent: the profile says quiescent = true", err=True)
        sys.exit(1)
    if home.profile_error is not None:
        click.echo("accepting and delivering mail, unless the last good profile says "
                   "quiescent = true")
        return
    click.echo("accepting and delivering mail")


@click.command(short_help="Is a server running? Quiescent? What is queued?")
@site_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@reports_errors
def status(site_dir: str | None, as_json: bool) -> None:
    """Say whether a server runs for the site, whether the site is quiescent and why, and
    how many messages are queued."""
    from postroom.ops.status import status_of
    from postroom.serve.periodic import read_state

    home = open_home(site_dir)
    st = status_of(home, read_state(home.state_dir))
    pid, quiescent, why, queued = st.pid, st.quiescent, st.quiescent_reason, st.queued
    broken = home.profile_error
    info = st.as_dict()
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"site: {home.home}")
    if pid is not None:
        click.echo(f"server: running, pid {pid}")
    else:
        click.echo("server: not running: no postroom serve runs for this site, so no mail "
                   "is taken or delivered")
    if quiescent:
        click.echo(f"mode: QUIESCENT ({why})")
    elif broken is not None:
        click.echo("mode: not quiesced by postroom quiesce (the profile's own quiescent "
                   "setting cannot be read)")
    elif pid is not None:
        click.echo("mode: accepting mail")
    else:
        click.echo("mode: not quiescent (a server started now would take mail)")
    if broken is not None:
        where = f"{broken.file}:{broken.line}" if broken.line else broken.file
        click.echo(f"profile: BROKEN at {where}; no server can start until it is fixed")
    click.echo(f"queue: {queued} message(s)")
    click.echo(f"last export: {_last_run(st.last_export)}")
    profile = getattr(home, "profile", None)
    if st.last_backup is None and profile is not None and not profile.backup.dest:
        click.echo("last backup: none: [backup] dest is not set, so serve takes none "
                   "(postroom backup DEST by hand or cron)")
    else:
        click.echo(f"last backup: {_last_run(st.last_backup)}")


def _last_run(entry: dict[str, object] | None) -> str:
    """One periodic task's last run, as ``postroom status`` shows it."""
    import time

    def when(t: object) -> str:
        seconds = float(t) if isinstance(t, int | float) else 0.0
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))

    if not entry:
        return "none recorded (serve runs it on its schedule)"

    if entry.get("ok"):
        return f"{when(entry.get('end'))}, ok: {entry.get('said')}"
    good = entry.get("last_ok")
    since = f"; last good {when(good)}" if good else "; never succeeded"
    return f"{when(entry.get('end'))}, FAILED: {entry.get('said')}{since}"
