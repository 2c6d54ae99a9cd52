"""``postroom users add|passwd|del|list``: submission users and their sender addresses."""

from __future__ import annotations

import sys

import click

from postroom.cli.options import reports_errors, site_option


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@click.group(short_help="Submission users (SMTP AUTH) and their sender addresses.")
def users() -> None:
    """Submission users (SMTP AUTH) and the sender addresses each may use."""


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
    from postroom.store.users import add_user

    site = site_mod.load(site_dir)
    info = add_user(site, login, _read_password(password_stdin), addresses)
    shown = ", ".join(info.addresses) or "no sender addresses"
    click.echo(f"user {info.login} added ({shown})")


@users.command()
@site_option
@click.argument("login")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin instead of prompting.")
@reports_errors
def passwd(site_dir: str | None, login: str, password_stdin: bool) -> None:
    """Set the password of LOGIN."""
    from postroom import site as site_mod
    from postroom.store.users import set_password

    site = site_mod.load(site_dir)
    set_password(site, login, _read_password(password_stdin))
    click.echo(f"password of {login} changed")


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
