"""The TLS policy of the listeners: AUTH only inside TLS, TLS 1.2 at least, AEAD suites
only for TLS 1.2 (``tls.ciphers``), a new cipher string in force after ``postroom reload``.

trustme issues ECDSA keys, so the suites named here are the ECDSA ones.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from postroom import site as site_mod
from postroom.errors import ConfigError
from postroom.site.profile import DEFAULT_CIPHERS
from postroom.smtp.tls import reload_certificate, server_context, set_ciphers
from tests.conftest import run
from tests.server import OUTSIDE_IP, RELAY_IP, Server, configure_site
from tests.smtp.smtp_client import Raw, client

CBC = "ECDHE-ECDSA-AES128-SHA256"        # TLS 1.2, CBC + HMAC: what testssl calls LUCKY13
GCM = "ECDHE-ECDSA-AES128-GCM-SHA256"    # TLS 1.2, AEAD
CHACHA = "ECDHE-ECDSA-CHACHA20-POLY1305"  # TLS 1.2, AEAD


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory, example_template: Path,
             ca: trustme.CA) -> Path:
    site = tmp_path_factory.mktemp("tls-policy") / "site"
    shutil.copytree(example_template, site)
    configure_site(site, ca)
    return site


@pytest.fixture(scope="module")
def tls_server(tls_site: Path) -> Iterator[Server]:
    s = Server(tls_site).start()
    yield s
    s.stop()


def client_context(ca: trustme.CA, *, ciphers: str | None = None,
                   tls12_only: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if tls12_only:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls11_context() -> ssl.SSLContext:
    """A client that speaks TLS 1.1 only (OpenSSL 3 allows it at security level 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def handshake(port: int, ctx: ssl.SSLContext, *, starttls: bool) -> str:
    """Connect to a listener and shake hands (after STARTTLS on 587); returns the TLS
    version, or raises ssl.SSLError when the server refuses the client."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=(OUTSIDE_IP, 0))
    try:
        if starttls:
            raw = Raw.__new__(Raw)
            raw.sock, raw.buf = sock, b""
            assert raw.reply().startswith("220")
            assert raw.cmd("EHLO laptop.example.net").startswith("250")
            assert raw.cmd("STARTTLS").startswith("220")
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            if not starttls:
                assert tls.recv(1024).startswith(b"220")
            return tls.version() or ""
    finally:
        sock.close()


def refused(port: int, ctx: ssl.SSLContext, *, starttls: bool) -> bool:
    try:
        handshake(port, ctx, starttls=starttls)
    except (ssl.SSLError, ConnectionResetError):
        return True
    return False


PORTS = [("submission", True), ("submissions", False)]


# -- AUTH only inside TLS -------------------------------------------------------------------

def test_no_auth_before_starttls_on_587(tls_server: Server, ca: trustme.CA) -> None:
    with client(tls_server.ports["submission"], OUTSIDE_IP) as c:
        _, text = c.ehlo("laptop.example.net")
        assert b"STARTTLS" in text and b"AUTH" not in text
        assert c.docmd("AUTH", "LOGIN")[0] == 530
        c.starttls(context=client_context(ca))
        _, text = c.ehlo("laptop.example.net")
        assert b"AUTH LOGIN PLAIN" in text and b"STARTTLS" not in text


def test_auth_inside_implicit_tls_on_465(tls_server: Server, ca: trustme.CA) -> None:
    with client(tls_server.ports["submissions"], OUTSIDE_IP, tls=True, ca=ca) as c:
        _, text = c.ehlo("laptop.example.net")
        assert b"AUTH LOGIN PLAIN" in text


def test_mx_never_offers_auth(tls_server: Server, ca: trustme.CA) -> None:
    with client(tls_server.ports["mx"], RELAY_IP) as c:
        _, text = c.ehlo("desk.inf.example.ac.uk")
        assert b"AUTH" not in text
        c.starttls(context=client_context(ca))
        _, text = c.ehlo("desk.inf.example.ac.uk")
        assert b"AUTH" not in text


# -- versions and suites --------------------------------------------------------------------

def _tls11_works_here(ca: trustme.CA) -> bool:
    """Can this OpenSSL make a TLS 1.1 client at all? Shake hands in memory with a
    server that allows it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.set_ciphers("DEFAULT:@SECLEVEL=0")
        server.minimum_version = ssl.TLSVersion.TLSv1_1
    ca.issue_cert("localhost").configure_cert(server)
    bios = [ssl.MemoryBIO() for _ in range(4)]
    c = tls11_context().wrap_bio(bios[0], bios[1], server_hostname="localhost")
    s = server.wrap_bio(bios[2], bios[3], server_side=True)
    for _ in range(10):
        done = 0
        for end in (c, s):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
        bios[2].write(bios[1].read())
        bios[0].write(bios[3].read())
        if done == 2:
            return c.version() == "TLSv1.1"
    return False


@pytest.mark.parametrize(("listener", "starttls"), PORTS)
def test_tls11_client_is_refused(tls_server: Server, tls_site: Path, ca: trustme.CA,
                                 listener: str, starttls: bool) -> None:
    ctx = server_context(site_mod.load(tls_site), required=True)
    assert ctx is not None and ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    if not _tls11_works_here(ca):
        pytest.skip("this OpenSSL makes no TLS 1.1 client; the minimum is checked above")
    assert refused(tls_server.ports[listener], tls11_context(), starttls=starttls)


@pytest.mark.parametrize(("listener", "starttls"), PORTS)
def test_cbc_suite_is_refused_aead_taken(tls_server: Server, ca: trustme.CA,
                                         listener: str, starttls: bool) -> None:
    port = tls_server.ports[listener]
    assert refused(port, client_context(ca, ciphers=CBC, tls12_only=True), starttls=starttls)
    for suite in (GCM, CHACHA):
        ctx = client_context(ca, ciphers=suite, tls12_only=True)
        assert handshake(port, ctx, starttls=starttls) == "TLSv1.2"
    assert handshake(port, client_context(ca), starttls=starttls) == "TLSv1.3"


def test_default_policy_offers_aead_with_forward_secrecy_only(tls_site: Path) -> None:
    ctx = server_context(site_mod.load(tls_site), required=True)
    assert ctx is not None
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12, "no TLS 1.2 suite at all"
    for c in tls12:
        assert c["aead"] and c["kea"] in ("kx-ecdhe", "kx-dhe"), c["name"]


# -- the profile key ------------------------------------------------------------------------

def _with_ciphers(site: Path, ciphers: str) -> None:
    profile = site / "postroom.toml"
    text = profile.read_text()
    text = text.replace('key = "tls/key.pem"\n',
                        f'key = "tls/key.pem"\nciphers = "{ciphers}"\n', 1)
    assert f'ciphers = "{ciphers}"' in text
    profile.write_text(text)


def test_bad_cipher_string_is_a_config_error_naming_the_key(example_site: Path) -> None:
    _with_ciphers(example_site, "NO-SUCH-SUITE")
    with pytest.raises(ConfigError) as e:
        site_mod.load(example_site)
    assert e.value.field == "tls.ciphers" and e.value.line
    assert "NO-SUCH-SUITE" in str(e.value)
    r = run("serve", site=example_site)
    assert r.returncode == 78 and "tls.ciphers" in r.stderr


def test_tls_module_names_the_key_too(example_site: Path) -> None:
    """The profile check runs with this machine's OpenSSL; the contexts check again."""
    site = site_mod.load(example_site)
    p = site.profile
    bad = p.model_copy(update={"tls": p.tls.model_copy(update={"ciphers": "NOPE"})})
    broken = type(site)(site.home, bad)
    with pytest.raises(ConfigError) as e:
        set_ciphers(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), broken)
    assert e.value.field == "tls.ciphers"
    # a failed set_ciphers empties OpenSSL's TLS 1.2 list: reload tries a fresh context
    # first, so the context in use keeps its suites
    live = server_context(site, required=True)
    assert live is not None
    before = [c["name"] for c in live.get_ciphers()]
    with pytest.raises(ConfigError) as e:
        reload_certificate(live, broken)
    assert e.value.field == "tls.ciphers"
    assert [c["name"] for c in live.get_ciphers()] == before


def test_default_is_documented_value() -> None:
    assert DEFAULT_CIPHERS == ("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:"
                               "!aNULL:!MD5:!DSS")


def test_new_cipher_string_in_force_after_reload(example_site: Path, ca: trustme.CA) -> None:
    configure_site(example_site, ca)
    server = Server(example_site).start()
    try:
        port = server.ports["submissions"]
        chacha = client_context(ca, ciphers=CHACHA, tls12_only=True)
        assert handshake(port, chacha, starttls=False) == "TLSv1.2"
        _with_ciphers(example_site, "ECDHE+AESGCM")
        r = run("reload", site=example_site)
        assert r.returncode == 0, r.stderr
        assert "tls.ciphers" in r.stdout
        assert refused(port, chacha, starttls=False)
        assert refused(server.ports["submission"], chacha, starttls=True)
        gcm = client_context(ca, ciphers=GCM, tls12_only=True)
        assert handshake(port, gcm, starttls=False) == "TLSv1.2"
    finally:
        server.stop()
