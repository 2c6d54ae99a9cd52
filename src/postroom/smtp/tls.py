"""TLS contexts for the listeners, from ``SITE/tls/``."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from postroom.errors import ConfigError
from postroom.site import Site


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
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(str(site.profile_path), f"cannot load {cert} / {key}: {e}",
                          field="tls.cert",
                          hint="check that the files are PEM, readable, and that the key "
                               "matches the certificate") from None
    return ctx


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
    """Load the site's certificate and key into a context in use: handshakes from now on
    present them (a renewed certificate needs no restart). The pair is tried on a fresh
    context first, so a bad pair leaves the old one in use (ConfigError names the files)."""
    cert, key = site.path(site.profile.tls.cert), site.path(site.profile.tls.key)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(str(site.profile_path), f"cannot load {cert} / {key}: {e}",
                          field="tls.cert",
                          hint="the previous certificate stays in use") from None
