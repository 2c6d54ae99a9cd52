"""``postroom users add|passwd|disable|enable|addresses|del|list``: submission users and
their sender addresses.

``add`` and ``passwd`` apply the password policy (``postroom.store.passwords``: at least 12
characters, not a common password, not the login or an address's local part). Disabling
takes effect at once in a running server (every AUTH and every MAIL reads the store):
the user cannot log in, and a session it has open can start no further message.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from postroom.cli.options import reports_errors, site_option

if TYPE_CHECKING:
    from postroom.store.users import UserInfo


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _new_password(from_stdin: bool, login: str, addresses: tuple[str, ...]) -> str:
    """Read a password and hold it to the policy (WeakPassword, exit 65, if it fails)."""
    from postroom.store.passwords import check_strength

    password = _read_password(from_stdin)
    check_strength(password, login=login, addresses=addresses)
    return password


def _shown(info: UserInfo) -> str:
    return ", ".join(info.addresses) or "no sender addresses"


@click.group(short_help="Submission users (SMTP AUTH) and their sender addresses.")
def users() -> None:
    """Submission users (SMTP AUTH) and the sender addresses each may use.

    Passwords must be at least 12 characters, not a common password and not the login or
    the local part of one of the user's addresses."""


@users.command()
@site_option
@click.argument("login")
@click.option("--address", "addresses", multiple=True, metavar="ADDR",
              help="A sender address the user may use (repeat for more).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin instead of prompting.")
@reports_errors
def add(site_dir: str | None, login: str, addresses: tuple[str, ...],
        password_stdin: bool) -> None:
    """Add the user LOGIN."""
    from postroom import site as site_mod
    from postroom.store import UnknownUser, UserExists
    from postroom.store.users import add_user, get_user, normalise_address, validate_login

    site = site_mod.load(site_dir)
    # what can be refused without the password is refused before it is asked for
    validate_login(login)
    wanted = tuple(sorted({normalise_address(a) for a in addresses}))
    try:
        get_user(site, login)
    except UnknownUser:
        pass
    else:
        raise UserExists(login)
    info = add_user(site, login, _new_password(password_stdin, login, wanted), wanted)
    click.echo(f"user {info.login} added ({_shown(info)})")


@users.command()
@site_option
@click.argument("login")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin instead of prompting.")
@reports_errors
def passwd(site_dir: str | None, login: str, password_stdin: bool) -> None:
    """Set the password of LOGIN."""
    from postroom import site as site_mod
    from postroom.store.users import get_user, set_password

    site = site_mod.load(site_dir)
    info = get_user(site, login)  # an unknown login is refused before the prompt
    set_password(site, login, _new_password(password_stdin, login, info.addresses))
    still = (f" (still disabled: 'postroom users enable {login}' lets it log in again)"
             if info.disabled else "")
    click.echo(f"password of {login} changed{still}")


@users.command(short_help="Stop a user from logging in and sending.")
@site_option
@click.argument("login")
@reports_errors
def disable(site_dir: str | None, login: str) -> None:
    """Stop LOGIN from logging in and sending, at once; the password and the sender
    addresses are kept for 'postroom users enable'."""
    from postroom import site as site_mod
    from postroom.store.users import set_disabled

    site = site_mod.load(site_dir)
    if set_disabled(site, login, True):
        click.echo(f"user {login} disabled: AUTH as {login} fails from now on, and a "
                   "session already logged in can start no further message")
    else:
        click.echo(f"user {login} was already disabled")


@users.command()
@site_option
@click.argument("login")
@reports_errors
def enable(site_dir: str | None, login: str) -> None:
    """Let the disabled user LOGIN log in and send again."""
    from postroom import site as site_mod
    from postroom.store.users import set_disabled

    site = site_mod.load(site_dir)
    if set_disabled(site, login, False):
        click.echo(f"user {login} enabled")
    else:
        click.echo(f"user {login} was not disabled")


@users.command("addresses", short_help="Show, add or remove the sender addresses of a user.")
@site_option
@click.argument("login")
@click.argument("action", required=False, type=click.Choice(["add", "remove"]))
@click.argument("addresses", nargs=-1, metavar="[ADDR]...")
@reports_errors
def addresses_(site_dir: str | None, login: str, action: str | None,
               addresses: tuple[str, ...]) -> None:
    """Show the sender addresses of LOGIN; with add or remove, change them.

    \b
      postroom users addresses alice
      postroom users addresses alice add a.smith@inf.example.ac.uk
      postroom users addresses alice remove old@inf.example.ac.uk
    """
    from postroom import site as site_mod
    from postroom.store.users import add_addresses, get_user, remove_addresses

    site = site_mod.load(site_dir)
    if action is None:
        if addresses:
            raise click.UsageError("say what to do with the addresses: add or remove")
        info = get_user(site, login)
    elif not addresses:
        raise click.UsageError(f"'{action}' needs at least one ADDR")
    elif action == "add":
        info = add_addresses(site, login, addresses)
    else:
        info = remove_addresses(site, login, addresses)
    _print_addresses(info)


def _print_addresses(info: UserInfo) -> None:
    disabled = " (disabled: it may send from none of them until enabled)" \
        if info.disabled and info.addresses else ""
    click.echo(f"{info.login}: {_shown(info)}{disabled}")


@users.command("del")
@site_option
@click.argument("login")
@reports_errors
def delete(site_dir: str | None, login: str) -> None:
    """Delete the user LOGIN and their sender addresses."""
    from postroom import site as site_mod
    from postroom.store.users import delete_user

    site = site_mod.load(site_dir)
    delete_user(site, login)
    click.echo(f"user {login} deleted")


@users.command("list", short_help="List the users, their sender addresses and state.")
@site_option
@reports_errors
def list_(site_dir: str | None) -> None:
    """List the users, their sender addresses and whether they are disabled."""
    from rich.console import Console
    from rich.table import Table

    from postroom import site as site_mod
    from postroom.store.users import list_users

    site = site_mod.load(site_dir)
    found = list_users(site)
    if not found:
        click.echo("no users")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("login", no_wrap=True)
    table.add_column("sender addresses", overflow="fold")
    table.add_column("created", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for u in found:
        table.add_row(u.login, "\n".join(u.addresses) or "-",
                      u.created.strftime("%Y-%m-%d %H:%M"),
                      "disabled" if u.disabled else "enabled")
    Console(highlight=False, soft_wrap=False).print(table)
