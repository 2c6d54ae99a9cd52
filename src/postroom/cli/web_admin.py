"""``postroom web-admin``: the accounts of the web interface and their API tokens.

An account administers the lists whose owners or moderators include its ``--email``;
``--site-admin`` gives it every list, the site status, quiescent mode and the queue.
Passwords follow the policy of ``postroom users`` (``postroom.store.passwords``). A token
is printed once, when it is made; the store keeps only its hash.
"""

from __future__ import annotations

import sys

import click

from postroom.cli.options import reports_errors, site_option

SCOPES = ("read", "lists", "queue", "site", "export")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@click.group(short_help="Web interface accounts and their API tokens.")
def web_admin() -> None:
    """Accounts of the web interface (list owners, moderators, site admins) and tokens."""


@web_admin.command()
@site_option
@click.argument("login")
@click.option("--email", default="", help="The address lists name as owner or moderator.")
@click.option("--site-admin", is_flag=True, help="Every list, the site, the queue.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@reports_errors
def add(site_dir: str | None, login: str, email: str, site_admin: bool,
        password_stdin: bool) -> None:
    """Make the account LOGIN."""
    from postroom import site as site_mod
    from postroom.store.passwords import check_strength
    from postroom.web.accounts import create_admin

    site = site_mod.load(site_dir)
    password = _read_password(password_stdin)
    check_strength(password, login=login, addresses=[email] if email else [])
    made = create_admin(site, login, password, email=email, site_admin=site_admin)
    click.echo(f"account {made.login} made" + (" (site admin)" if made.site_admin else ""))


@web_admin.command()
@site_option
@click.argument("login")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@reports_errors
def passwd(site_dir: str | None, login: str, password_stdin: bool) -> None:
    """Set the password of LOGIN (and unlock it)."""
    from postroom import site as site_mod
    from postroom.store.passwords import check_strength
    from postroom.web.accounts import set_password

    site = site_mod.load(site_dir)
    password = _read_password(password_stdin)
    check_strength(password, login=login)
    set_password(site, login, password)
    click.echo(f"password of {login} changed")


@web_admin.command()
@site_option
@click.argument("login")
@reports_errors
def delete(site_dir: str | None, login: str) -> None:
    """Delete the account LOGIN, its sessions and tokens."""
    from postroom import site as site_mod
    from postroom.web.accounts import delete_admin

    delete_admin(site_mod.load(site_dir), login)
    click.echo(f"account {login} deleted")


@web_admin.command("list")
@site_option
@reports_errors
def list_(site_dir: str | None) -> None:
    """Every account: login, email, site admin."""
    from postroom import site as site_mod
    from postroom.web.accounts import all_admins

    for a in all_admins(site_mod.load(site_dir)):
        click.echo(f"{a.login}\t{a.email}\t{'site admin' if a.site_admin else ''}".rstrip())


@web_admin.command()
@site_option
@click.argument("login")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(SCOPES),
              help="What the token may do (repeat for several).")
@click.option("--name", default="", help="What the token is for.")
@reports_errors
def token(site_dir: str | None, login: str, scopes: tuple[str, ...], name: str) -> None:
    """Make an API token for LOGIN and print it (once)."""
    from postroom import site as site_mod
    from postroom.web.accounts import new_api_token

    click.echo(new_api_token(site_mod.load(site_dir), login, list(scopes), name))


@web_admin.command()
@site_option
@click.argument("login", required=False)
@reports_errors
def tokens(site_dir: str | None, login: str | None) -> None:
    """The API tokens (of LOGIN, or of everyone)."""
    from postroom import site as site_mod
    from postroom.web.accounts import tokens_of

    for t in tokens_of(site_mod.load(site_dir), login):
        used = f"{t.last_used:%Y-%m-%d %H:%M}" if t.last_used else "never used"
        click.echo(f"{t.id}\t{t.login}\t{t.name}\t{' '.join(t.scopes)}\t{used}"
                   f"{chr(9) + 'revoked' if t.revoked else ''}")


@web_admin.command()
@site_option
@click.argument("token_id", type=int)
@reports_errors
def revoke(site_dir: str | None, token_id: int) -> None:
    """Revoke the API token TOKEN_ID (see 'web-admin tokens')."""
    from postroom import site as site_mod
    from postroom.errors import EX_NOUSER
    from postroom.web.accounts import revoke_token

    if not revoke_token(site_mod.load(site_dir), token_id):
        click.echo(f"postroom: no token {token_id}", err=True)
        sys.exit(EX_NOUSER)
    click.echo(f"token {token_id} revoked")
