"""Options and helpers every command shares."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from postroom.errors import PostroomError, ProfileError

if TYPE_CHECKING:
    from postroom.site import SiteHome

F = TypeVar("F", bound=Callable[..., Any])

site_option = click.option(
    "--site", "site_dir", envvar="POSTROOM_SITE", default=None, metavar="DIR",
    help="Site home (default: $POSTROOM_SITE, else the current directory).")

LAST_GOOD = "a running server keeps running the last good profile"


def reports_errors(func: F) -> F:
    """Print a PostroomError on stderr and exit with its sysexits code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PostroomError as e:
            click.echo(f"postroom: {e}", err=True)
            if isinstance(e, ProfileError):
                ctx = click.get_current_context(silent=True)
                what = f"'{ctx.command_path}'" if ctx is not None else "this command"
                click.echo(f"postroom: {what} needs a good profile; {LAST_GOOD}", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


def open_home(site_dir: str | None) -> SiteHome:
    """The site home, for a command that needs no profile (the queue, quiesce, resume,
    status). A broken profile is a warning on stderr, and the command goes on."""
    from postroom import site as site_mod

    home = site_mod.open_home(site_dir)
    if home.profile_error is not None:
        click.echo(f"postroom: warning: {home.profile_error}", err=True)
        click.echo(f"postroom: warning: going on without the profile; {LAST_GOOD} "
                   "(fix the file, then run 'postroom reload')", err=True)
    return home
