"""``postroom init DIR [--example]``: write a new site home."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import click

from postroom.cli.options import reports_errors
from postroom.site.home import LAYOUT

EMPTY_PROFILE = """\
# postroom site profile; see docs/configuration.md for every key.
[site]
hostname = "{hostname}"
domains = ["{domain}"]
postmaster = "postmaster@{domain}"

[maps]
aliases = ["maps/aliases"]
forwards = ["maps/forwards"]
local_users = ["maps/local-users"]

[[listeners]]
name = "mx"
role = "mx"
address = "127.0.0.1"
port = 2525
"""


# Alias file targets are absolute paths, so the example's maps name the new site home with
# this placeholder and init writes the real path in.
SITE_HOME = b"@SITE_HOME@"


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--example", is_flag=True, help="Write the example department site.")
@click.option("--domain", default="example.org", show_default=True,
              help="Local domain of a new (non-example) site.")
@click.option("--force", is_flag=True, help="Write into a directory that already has a profile.")
@reports_errors
def init(directory: Path, example: bool, domain: str, force: bool) -> None:
    """Create a site home in DIRECTORY."""
    profile = directory / "postroom.toml"
    if profile.exists() and not force:
        raise click.ClickException(f"{profile} exists; use --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    for part in LAYOUT:
        if part.directory:
            (directory / part.name).mkdir(exist_ok=True)
    if example:
        _copy_example(directory)
    else:
        profile.write_text(EMPTY_PROFILE.format(hostname=f"mail.{domain}", domain=domain))
        (directory / "maps" / "aliases").write_text(
            "# name: target, target\npostmaster: root\nMAILER-DAEMON: postmaster\n")
        (directory / "maps" / "forwards").write_text("# user: user@mailbox.host\n")
        (directory / "maps" / "local-users").write_text("root\n")
    _make_store(directory, example)
    _make_certificate(directory)
    _make_srs_secret(directory)
    click.echo(f"site written to {directory.resolve()}")


def _copy_example(directory: Path) -> None:
    home = os.fsencode(directory.resolve())
    source = resources.files("postroom") / "example"
    with resources.as_file(source) as src:
        for path in Path(src).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                dest = directory / path.relative_to(src)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(path.read_bytes().replace(SITE_HOME, home))


def _make_certificate(directory: Path) -> None:
    """A self-signed certificate so submission works out of the box; replace it for real use."""
    import shutil as sh

    from postroom import site as site_mod
    from postroom.smtp.tls import make_self_signed

    s = site_mod.load(directory)
    cert, key = s.path(s.profile.tls.cert), s.path(s.profile.tls.key)
    if cert.exists() or not sh.which("openssl"):
        return
    make_self_signed(cert, key, s.profile.site.hostname)
    click.echo(f"self-signed certificate for {s.profile.site.hostname} written to {cert}")


def _make_srs_secret(directory: Path) -> None:
    from postroom import site as site_mod
    from postroom.srs import secrets

    s = site_mod.load(directory)
    secrets.ensure(s.path(s.profile.srs.secret_file))


def _make_store(directory: Path, example: bool) -> None:
    """Create the store and, for the example, its mailing list; skipped if no store yet."""
    try:
        from postroom.store import example as store_example
    except ImportError:
        return
    store_example.prepare(directory, example=example)
