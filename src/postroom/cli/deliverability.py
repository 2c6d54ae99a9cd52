"""``postroom dkim keygen|list`` and ``postroom srs rotate``: the keys that make our mail
trusted elsewhere. A running server is told to reload, so a new key or secret is used at
once."""

from __future__ import annotations

import sys
import time

import click

from postroom.cli.options import reports_errors, site_option
from postroom.errors import EX_CONFIG

EX_DATAERR = 65


def _tell_server(site_dir: str | None) -> None:
    from postroom import control, site

    s = site.load(site_dir)
    reply = control.request(s.state_dir, "reload")
    if reply is None:
        click.echo("no server running; it reads this when it starts")
    elif reply.get("ok"):
        click.echo("server reloaded: in force now")
    else:
        click.echo(f"postroom: the server did not reload: {reply.get('error')}", err=True)


@click.group(short_help="DKIM keys: make one (and its DNS record), list them.")
def dkim() -> None:
    """DKIM keys in SITE/keys/dkim/DOMAIN.SELECTOR.key."""


@dkim.command(short_help="Make a DKIM key for DOMAIN and print its DNS TXT record.")
@site_option
@click.argument("domain")
@click.option("--selector", "-s", default=None,
              help="DNS selector (default: pYYYYMM, plus 'e' for ed25519).")
@click.option("--algorithm", "-a", type=click.Choice(["rsa", "ed25519"]), default=None,
              help="Key type (default: [dkim] algorithm, rsa = RSA-2048).")
@reports_errors
def keygen(site_dir: str | None, domain: str, selector: str | None,
           algorithm: str | None) -> None:
    """Write a new key for DOMAIN (never over an old one) and print the TXT record to
    publish. A domain's first key signs at once; a further one (a rotation) only once
    [dkim] selectors names it, after its record is published."""
    from postroom import site
    from postroom.signing.keys import generate, txt_strings

    s = site.load(site_dir)
    algorithm = algorithm or s.profile.dkim.algorithm
    selector = selector or time.strftime("p%Y%m") + ("e" if algorithm == "ed25519" else "")
    try:
        key = generate(s.path(s.profile.dkim.keys_dir), domain, selector, algorithm)
    except FileExistsError:
        click.echo(f"postroom: a key for {domain} with selector {selector} exists; "
                   "choose another --selector", err=True)
        sys.exit(EX_CONFIG)
    except ValueError as e:
        click.echo(f"postroom: {e}", err=True)
        sys.exit(EX_DATAERR)
    click.echo(f"wrote {key.path} ({algorithm})")
    click.echo("publish this TXT record:")
    click.echo(f"{key.dns_name}. IN TXT ( {txt_strings(key.dns_record())} )")
    _tell_server(site_dir)


@dkim.command("list", short_help="The DKIM keys, which one signs, and their DNS records.")
@site_option
@click.option("--check", is_flag=True, help="Look up each record in DNS and compare.")
@reports_errors
def list_keys(site_dir: str | None, check: bool) -> None:
    """One line a key: domain, selector, algorithm, 'signs' for the key in use; with
    --check, whether DNS publishes this key (exit 65 when one in use does not)."""
    from postroom import site
    from postroom.signing.dnstxt import TxtResolver
    from postroom.signing.keys import KeyRing

    s = site.load(site_dir)
    ring = KeyRing.load(s)
    dns = TxtResolver.from_site(s) if check else None
    status = 0
    if not ring.keys:
        click.echo("no DKIM keys (postroom dkim keygen DOMAIN)")
    for key in ring.keys:
        signs = ring.for_domain(key.domain) is key
        line = f"{key.domain}\t{key.selector}\t{key.algorithm}\t{'signs' if signs else '-'}"
        if dns is not None:
            found = [r.decode("ascii", "replace") for r in dns.records(key.dns_name)]
            want = key.public_b64()
            state = ("published" if any(want in f.replace(" ", "") for f in found)
                     else "DIFFERS" if found else "MISSING")
            line += f"\t{state}"
            if signs and state != "published":
                status = EX_DATAERR
        click.echo(line)
    sys.exit(status)


@click.group(short_help="SRS: rotate the secret forwarded mail is signed with.")
def srs() -> None:
    """The SRS secrets in SITE/keys/srs.secret."""


@srs.command(short_help="Sign with a new secret; old ones are still accepted for bounces.")
@site_option
@reports_errors
def rotate(site_dir: str | None) -> None:
    """Put a new secret first. The old ones keep being accepted until every address
    they signed is older than [srs] max_age days; then the next rotation drops them."""
    from postroom import site
    from postroom.srs import secrets

    s = site.load(site_dir)
    kept, dropped = secrets.rotate(s.path(s.profile.srs.secret_file), s.profile.srs.max_age)
    click.echo(f"new SRS secret in use; {kept} accepted, {dropped} dropped")
    _tell_server(site_dir)
