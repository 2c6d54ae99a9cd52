"""The signing parts without a server: key files and selection, the DNS record, the
OpenSSL adapter of dkimpy (same bytes as dkimpy's own; fails when dkimpy changes), and
removing Authentication-Results that claim our id."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import dkim
import dkim.crypto
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom.signing import authresults, body_memo, crlf_parse, dkimsign, rsa_openssl
from postroom.signing.keys import KeyRing, generate, key_from_file, txt_strings


def test_generate_names_the_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    key = generate(tmp_path, "Example.ORG.", "s1", "ed25519")
    assert key.path.name == "example.org.s1.key" and key.algorithm == "ed25519"
    assert key.path.stat().st_mode & 0o777 == 0o600
    assert key_from_file(key.path) == key
    with pytest.raises(FileExistsError):
        generate(tmp_path, "example.org", "s1", "rsa")
    with pytest.raises(ValueError, match="not a selector"):
        generate(tmp_path, "example.org", "a.b", "rsa")


def test_dns_record_and_its_strings(tmp_path: Path) -> None:
    key = generate(tmp_path, "example.org", "r1", "rsa")
    record = key.dns_record()
    assert record.startswith("v=DKIM1; k=rsa; p=MIIBIjAN") and len(record) > 255
    strings = txt_strings(record)
    assert strings.count('"') == 4 and strings.replace('" "', "").strip('"') == record
    assert generate(tmp_path, "example.org", "e1", "ed25519").dns_record().startswith(
        "v=DKIM1; k=ed25519; p=")


def test_ring_signs_with_the_named_selector_else_the_oldest(tmp_path: Path) -> None:
    old = generate(tmp_path, "example.org", "old", "ed25519")
    new = generate(tmp_path, "example.org", "new", "rsa")
    os.utime(old.path, (time.time() - 100, time.time() - 100))
    keys = [k for k in (key_from_file(p) for p in tmp_path.iterdir()) if k]
    old_key = key_from_file(old.path)
    assert KeyRing(keys, {}).for_domain("example.org") == old_key  # a new key waits
    assert KeyRing(keys, {}).for_domain("lists.example.org") == old_key  # a parent signs
    assert KeyRing(keys, {"example.org": "new"}).for_domain("example.org") == new
    assert KeyRing(keys, {}).arc_key("example.org") == new  # ARC: RSA only
    assert KeyRing(keys, {}).for_domain("example.com") is None


def test_openssl_adapter_gives_dkimpys_own_bytes(tmp_path: Path) -> None:
    key = generate(tmp_path, "example.org", "r1", "rsa")
    pk = dkim.crypto.parse_pem_private_key(key.private)
    for name in ("sha256", "sha1"):
        digest = hashlib.new(name, b"the headers")
        assert rsa_openssl.sign(digest, pk) == rsa_openssl.ORIGINAL(digest, pk)


def test_openssl_adapter_is_installed_where_dkimpy_calls_it() -> None:
    # dkimpy's signer calls the name in its package namespace (DKIM.gen_header): if this
    # stops being true, the adapter would silently do nothing
    source = Path(dkim.__file__).read_text()
    assert "RSASSA_PKCS1_v1_5_sign(h, pk)" in source
    assert source.count("pk = parse_pem_private_key(privkey)") == 2  # DKIM and ARC sign
    rsa_openssl.install()
    rsa_openssl.install()  # twice is fine
    assert dkim.RSASSA_PKCS1_v1_5_sign is rsa_openssl.sign
    assert dkim.parse_pem_private_key is rsa_openssl.parse_pem_private_key


@given(st.lists(st.sampled_from([b"", b" ", b"\t", b"x  y", b"a \t", b".", b"\xff",
                                 b"x y", b" x", b"\r", b"\n", b"\r\n \r\n"]),
                max_size=8), st.sampled_from([b"\r\n", b"\n", b""]))
def test_body_memo_gives_dkimpys_own_bytes(parts: list[bytes], eol: bytes) -> None:
    """Twice the same body (from memory the second time), then another: dkimpy's bytes,
    whether the body needed the regular-expression passes or not."""
    body = eol.join(parts) + eol
    for b in (body, body, body + b"more\r\n"):
        assert body_memo.canonicalize_body(b) == body_memo.ORIGINAL(b)


def test_body_memo_is_installed_where_dkimpy_calls_it(tmp_path: Path) -> None:
    """A list post's copies share the body: both signatures verify, and the second one's
    body was canonicalised from memory (dkimpy's sign asks the policy's body algorithm)."""
    source = Path(dkim.__file__).read_text()
    assert source.count("canon_policy.canonicalize_body(self.body)") >= 2  # DKIM and ARC
    body_memo.install()
    body_memo.install()  # twice is fine
    assert dkim.canonicalization.Relaxed.canonicalize_body is body_memo.canonicalize_body
    key = generate(tmp_path, "example.org", "e1", "ed25519")
    body = b"\r\nthe same body  \r\nfor every member\r\n"
    record = key.dns_record().encode()
    for member in (b"a@example.net", b"b@example.net"):
        msg = b"From: l@example.org\r\nTo: " + member + b"\r\nSubject: x\r\n" + body
        signed = dkimsign.sign(msg, key)
        assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
        assert body_memo._last.body[0] == body[2:]  # dkimpy's sign asked the memo


def _parsed(parse: Any, message: bytes) -> Any:
    try:
        return parse(message)
    except Exception as e:  # dkimpy's own errors, an IndexError among them
        return (type(e).__name__, str(e))


@given(st.lists(st.sampled_from([b"From: a@example.org", b"Subject: x", b" folded",
                                 b"\tfolded", b"From x", b"bad header", b"", b"body  line ",
                                 b"X-E:", b"\r", b"a\nb"]), max_size=10),
       st.sampled_from([b"\r\n", b"\n"]), st.booleans())
def test_crlf_parse_gives_dkimpys_headers_and_body(lines: list[bytes], eol: bytes,
                                                    ended: bool) -> None:
    """Headers, body and errors as dkimpy's own parser gives them, for CRLF messages (the
    fast way) and any other (dkimpy's way)."""
    message = eol.join(lines) + (eol if ended else b"")
    assert _parsed(crlf_parse.rfc822_parse, message) == _parsed(crlf_parse.ORIGINAL, message)


def test_crlf_parse_is_installed_where_dkimpy_calls_it(tmp_path: Path) -> None:
    source = Path(dkim.__file__).read_text()
    assert "self.headers, self.body = rfc822_parse(message)" in source
    crlf_parse.install()
    crlf_parse.install()  # twice is fine
    assert dkim.rfc822_parse is crlf_parse.rfc822_parse
    key = generate(tmp_path, "example.org", "p1", "ed25519")
    msg = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: x\r\n\r\nbody\r\n"
    record = key.dns_record().encode()
    assert dkim.verify(dkimsign.sign(msg, key), dnsfunc=lambda name, timeout=5: record)


def test_sign_covers_list_unsubscribe_post_and_oversigns_from(tmp_path: Path) -> None:
    key = generate(tmp_path, "example.org", "r1", "rsa")
    msg = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: x\r\n"
           b"List-Unsubscribe: <https://example.org/u>\r\n"
           b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nbody\r\n")
    signed = dkimsign.sign(msg, key)
    h = signed.split(b"\r\n\r\n")[0].replace(b"\r\n\t", b"").replace(b"\r\n ", b"")
    tags = h.split(b"h=", 1)[1].split(b";", 1)[0].lower().replace(b" ", b"").split(b":")
    assert b"list-unsubscribe-post" in tags and tags.count(b"from") == 2


def test_strip_ours_keeps_other_ids() -> None:
    msg = (b"Authentication-Results: mx.example.net; spf=pass\r\n"
           b"Authentication-Results: Hub.Example.ORG;\r\n\tdkim=pass header.d=evil\r\n"
           b"From: a@example.org\r\n\r\nAuthentication-Results: hub.example.org; body\r\n")
    out = authresults.strip_ours(msg, "hub.example.org")
    assert out == (b"Authentication-Results: mx.example.net; spf=pass\r\n"
                   b"From: a@example.org\r\n\r\nAuthentication-Results: hub.example.org; "
                   b"body\r\n")


def test_from_domain() -> None:
    assert dkimsign.from_domain(b"From: Ann <Ann@Example.ORG>\r\n\r\n") == "example.org"
    assert dkimsign.from_domain(b"From:\r\n a@b.example\r\n\r\n") == "b.example"
    assert dkimsign.from_domain(b"Subject: none\r\n\r\n") == ""
