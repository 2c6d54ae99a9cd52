"""Options and helpers every command shares."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from postroom.errors import PostroomError

F = TypeVar("F", bound=Callable[..., Any])

site_option = click.option(
    "--site", "site_dir", envvar="POSTROOM_SITE", default=None, metavar="DIR",
    help="Site home (default: $POSTROOM_SITE, else the current directory).")


def reports_errors(func: F) -> F:
    """Print a PostroomError on stderr and exit with its sysexits code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PostroomError as e:
            click.echo(f"postroom: {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]
