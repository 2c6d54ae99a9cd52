"""``postroom lists create|delete|show|list|set``: mailing lists and their settings."""

from __future__ import annotations

import json
from enum import StrEnum

import click

from postroom.cli.options import reports_errors, site_option


@click.group(short_help="Mailing lists: create, show, set, list and delete them.")
def lists() -> None:
    """Mailing lists (NAME@DOMAIN, with NAME-request, -owner, -bounces... addresses).

    LIST is NAME@DOMAIN, or NAME alone when one list has that name. The settings, their
    values and defaults are in docs/lists.md; 'postroom lists show LIST' prints them."""


@lists.command(short_help="Create the list NAME@DOMAIN (NAME alone: the first domain).")
@site_option
@click.argument("address", metavar="NAME[@DOMAIN]")
@click.option("--owner", "owners", multiple=True, metavar="ADDR",
              help="An owner of the list (repeat for more).")
@click.option("--description", default="", help="What the list is for (one line).")
@reports_errors
def create(site_dir: str | None, address: str, owners: tuple[str, ...],
           description: str) -> None:
    """Create the list NAME@DOMAIN (NAME alone: the site's first domain), with its owners;
    every other setting starts at its default ('postroom lists set' changes them)."""
    from postroom import site as site_mod
    from postroom.lists.settings_text import parse_settings
    from postroom.store.lists import create_list, split_list_address

    site = site_mod.load(site_dir)
    name, domain = split_list_address(address, site.profile.site.domains[0])
    if description:
        parse_settings([f"description={description}"])  # the same check as 'set'
    info = create_list(site, name, domain, owners=owners, description=description)
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


@lists.command(short_help="Delete a list, with its members and settings.")
@site_option
@click.argument("address", metavar="NAME@DOMAIN")
@reports_errors
def delete(site_dir: str | None, address: str) -> None:
    """Delete the list NAME@DOMAIN, with its members and settings."""
    from postroom import site as site_mod
    from postroom.store.lists import delete_list, split_list_address

    site = site_mod.load(site_dir)
    name, domain = split_list_address(address, site.profile.site.domains[0])
    delete_list(site, name, domain)
    click.echo(f"list {name}@{domain} deleted")


@lists.command(short_help="Print every setting of a list.")
@site_option
@click.argument("address", metavar="LIST")
@click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON.")
@reports_errors
def show(site_dir: str | None, address: str, as_json: bool) -> None:
    """Print every setting of LIST (as 'postroom lists set' takes them back)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from postroom import site as site_mod
    from postroom.lists.settings_text import SETTING_NAMES, settings_json, show_value
    from postroom.lists.store import find_list, get_settings

    site = site_mod.load(site_dir)
    settings = get_settings(site, *find_list(site, address))
    if as_json:
        click.echo(json.dumps(settings_json(settings), indent=2))
        return
    table = Table("setting", "value", title=settings.address, box=box.SIMPLE,
                  title_justify="left")
    for key in SETTING_NAMES:
        value = getattr(settings, key)
        # a text setting quoted, so a prefix's trailing space shows
        table.add_row(key, repr(value) if isinstance(value, str) and not isinstance(
            value, StrEnum) else show_value(settings, key))
    Console(soft_wrap=False).print(table)


@lists.command("set", short_help="Change settings of a list (KEY=VALUE pairs).")
@site_option
@click.argument("address", metavar="LIST")
@click.argument("pairs", metavar="KEY=VALUE...", nargs=-1, required=True)
@reports_errors
def set_(site_dir: str | None, address: str, pairs: tuple[str, ...]) -> None:
    """Change settings of LIST, e.g. posting_policy=moderated subject_prefix='[staff] '.

    Lists (owners, moderators, acceptable_aliases) are comma separated; address_rules is
    ACTION:PATTERN,... with ACTION accept, hold, reject or discard and PATTERN an address
    or ^regex. Every pair is checked first; one bad pair changes nothing."""
    from postroom import site as site_mod
    from postroom.lists.settings_text import parse_settings, show_value
    from postroom.lists.store import find_list, update_settings

    site = site_mod.load(site_dir)
    values = parse_settings(pairs)
    name, domain = find_list(site, address)
    settings = update_settings(site, name, domain, values)
    for key in values:
        click.echo(f"{settings.address}: {key} = {show_value(settings, key)}")


@lists.command(short_help="Send the pending digest of LIST (or of every list) now.")
@site_option
@click.argument("address", metavar="LIST", required=False)
@reports_errors
def digest(site_dir: str | None, address: str | None) -> None:
    """Send the digest of LIST now, whether or not its size or period is reached (without
    LIST: every list with posts pending). 'serve' sends due digests by itself, every
    [lists] digest_check."""
    from postroom import runtime
    from postroom.lists import digest as digests
    from postroom.lists.store import find_list, settings_for
    from postroom.runner.inject import inject_from_command

    rt = runtime.build(site_dir)

    def inject(env: object, message: bytes) -> str:
        from postroom.envelope import Envelope

        assert isinstance(env, Envelope)
        return inject_from_command(env, message, site=rt.site)

    if address is None:
        said = digests.send_due(rt, inject, force=True)
    else:
        name, domain = find_list(rt.site, address)
        s = settings_for(rt.site, f"{name}@{domain}")
        assert s is not None
        line = digests.send_issue(rt, s, inject)
        said = [line] if line else []
    click.echo("\n".join(said) if said else "no digest pending")


@lists.command("import-config", short_help="Settings from Mailman 2's config_list -o.")
@site_option
@click.argument("address", metavar="LIST")
@click.argument("file", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print what would be set; change nothing.")
@reports_errors
def import_config(site_dir: str | None, address: str, file: str, dry_run: bool) -> None:
    """Set LIST's settings from FILE, the output of Mailman 2's 'config_list -o FILE LIST'
    (read, never run). Prints each setting set, and a note for each Mailman variable kept
    differently or not at all."""
    from pathlib import Path

    from postroom import site as site_mod
    from postroom.lists.mailman_config import read_config, settings_from_config
    from postroom.lists.settings_text import show_value
    from postroom.lists.store import find_list, get_settings, update_settings

    site = site_mod.load(site_dir)
    name, domain = find_list(site, address)
    cfg = read_config(Path(file).read_text(encoding="utf-8", errors="replace"), file)
    got = settings_from_config(cfg, get_settings(site, name, domain))
    settings = get_settings(site, name, domain) if dry_run else update_settings(
        site, name, domain, got.values)
    for key, value in got.values.items():
        shown = show_value(settings, key) if not dry_run else repr(value)
        click.echo(f"{name}@{domain}: {key} = {shown}" + (" (dry run)" if dry_run else ""))
    for note in got.notes:
        click.echo(f"note: {note}")


@lists.command("import-archive", short_help="A Pipermail mbox into the list's archive.")
@site_option
@click.argument("address", metavar="LIST")
@click.argument("mbox", metavar="MBOX", type=click.Path(dir_okay=False))
@reports_errors
def import_archive(site_dir: str | None, address: str, mbox: str) -> None:
    """Append every message of MBOX (Mailman 2: archives/private/LIST.mbox/LIST.mbox) to
    LIST's archive, each under the month of its Date."""
    from pathlib import Path

    from postroom import site as site_mod
    from postroom.lists.mailman_config import import_pipermail
    from postroom.lists.store import find_list, get_settings

    site = site_mod.load(site_dir)
    name, domain = find_list(site, address)
    done = import_pipermail(site, get_settings(site, name, domain), Path(mbox))
    click.echo(f"{name}@{domain}: {done.messages} messages archived"
               + (f", {done.skipped} not (the list keeps no archive)" if done.skipped else ""))
