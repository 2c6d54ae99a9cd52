"""``postroom lists create|list|delete``: mailing lists in the store."""

from __future__ import annotations

import click

from postroom.cli.options import reports_errors, site_option


@click.group(short_help="Mailing lists: create, list and delete them.")
def lists() -> None:
    """Mailing lists (NAME@DOMAIN, with NAME-request, -owner, -bounces... addresses)."""


@lists.command(short_help="Create the list NAME@DOMAIN (NAME alone: the first domain).")
@site_option
@click.argument("address", metavar="NAME@DOMAIN")
@reports_errors
def create(site_dir: str | None, address: str) -> None:
    """Create the list NAME@DOMAIN (NAME alone: the site's first domain)."""
    from postroom import site as site_mod
    from postroom.store.lists import create_list, split_list_address

    site = site_mod.load(site_dir)
    name, domain = split_list_address(address, site.profile.site.domains[0])
    info = create_list(site, name, domain)
    click.echo(f"list {info.address} created")


@lists.command("list")
@site_option
@reports_errors
def list_(site_dir: str | None) -> None:
    """Print every list address, one a line."""
    from postroom import site as site_mod
    from postroom.store.lists import all_lists

    site = site_mod.load(site_dir)
    for info in all_lists(site):
        click.echo(info.address)


@lists.command()
@site_option
@click.argument("address", metavar="NAME@DOMAIN")
@reports_errors
def delete(site_dir: str | None, address: str) -> None:
    """Delete the list NAME@DOMAIN."""
    from postroom import site as site_mod
    from postroom.store.lists import delete_list, split_list_address

    site = site_mod.load(site_dir)
    name, domain = split_list_address(address, site.profile.site.domains[0])
    delete_list(site, name, domain)
    click.echo(f"list {name}@{domain} deleted")
