"""TLS contexts for the listeners, from ``SITE/tls/`` and the profile's ``[tls]``.

The policy (``docs/operations.md``, "Limits and abuse"): TLS 1.2 at least; for TLS 1.2 the
cipher string ``tls.ciphers`` (default: AEAD suites with forward secrecy only, so no CBC
suite is offered); TLS 1.3 suites are OpenSSL's, all AEAD. AUTH is offered on 587 only
after STARTTLS (aiosmtpd's ``auth_require_tls``) and on 465 inside TLS. ``postroom
reload`` loads the certificate and the cipher string again into the contexts in use.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from postroom.errors import ConfigError
from postroom.site import Site
from postroom.site.profile import DEFAULT_CIPHERS


def server_context(site: Site, *, required: bool) -> ssl.SSLContext | None:
    """The server context, or None when no certificate exists and none is required.

    A missing or unreadable certificate is a startup error when a listener needs TLS
    (submission, submissions); the message names the file and how to make one.
    """
    cert, key = site.path(site.profile.tls.cert), site.path(site.profile.tls.key)
    if not cert.exists() and not required:
        return None
    for path, field in ((cert, "tls.cert"), (key, "tls.key")):
        if not path.is_file():
            raise ConfigError(str(site.profile_path), f"{path} does not exist", field=field,
                              hint="install the PEM certificate and key there; for a test "
                                   "site: openssl req -x509 -newkey rsa:2048 -nodes -subj "
                                   f"/CN={site.profile.site.hostname} -keyout {key} -out {cert}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    set_ciphers(ctx, site)
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(str(site.profile_path), f"cannot load {cert} / {key}: {e}",
                          field="tls.cert",
                          hint="check that the files are PEM, readable, and that the key "
                               "matches the certificate") from None
    return ctx


def set_ciphers(ctx: ssl.SSLContext, site: Site) -> None:
    """Apply ``tls.ciphers`` (the TLS 1.2 suites) to ``ctx``; ConfigError if OpenSSL can
    select none (the profile check says so first; this is for a different OpenSSL)."""
    ciphers = site.profile.tls.ciphers
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError as e:
        raise ConfigError(str(site.profile_path), f"OpenSSL can select no cipher from "
                          f"{ciphers!r} ({e})", field="tls.ciphers",
                          hint="write an OpenSSL cipher string, e.g. the default "
                               f"{DEFAULT_CIPHERS!r}") from None


def make_self_signed(cert: Path, key: Path, hostname: str) -> None:
    """A self-signed certificate for test and example sites (openssl must be installed)."""
    cert.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
         "-subj", f"/CN={hostname}", "-addext", f"subjectAltName=DNS:{hostname}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    key.chmod(0o600)



def reload_certificate(ctx: ssl.SSLContext, site: Site) -> None:
    """Load the site's certificate, key and ``tls.ciphers`` into a context in use:
    handshakes from now on use them (a renewed certificate or a new cipher string needs no
    restart). Both are tried on a fresh context first, so a bad pair or cipher string
    leaves the old ones in use (ConfigError names the files or the key)."""
    cert, key = site.path(site.profile.tls.cert), site.path(site.profile.tls.key)
    trial = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    set_ciphers(trial, site)
    try:
        trial.load_cert_chain(cert, key)
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(str(site.profile_path), f"cannot load {cert} / {key}: {e}",
                          field="tls.cert",
                          hint="the previous certificate stays in use") from None
    set_ciphers(ctx, site)
