"""RSA signatures for dkimpy through OpenSSL: the first adapter of dkimpy (the second,
``body_memo``, keeps the last body's canonical form).

dkimpy signs RSA with Python integers (``dkim.crypto.RSASSA_PKCS1_v1_5_sign``: two
1024-bit ``pow`` calls, about 6 ms for a 2048-bit key); OpenSSL through ``cryptography``
takes a tenth of that. PKCS#1 v1.5 signatures are deterministic, so the bytes are the same
either way. dkimpy also parses the PEM key (pure-Python ASN.1, about 0.2 ms) on every
signature; the parsed key is kept instead. ``install()`` replaces the two names in the
``dkim`` namespace that ``DKIM.sign``/``ARC.sign`` and ``DKIM.gen_header`` call, and
refuses when dkimpy no longer has them as we know them; ``postroom.signing.outgoing``
installs it, and ``tests/deliverability/test_signing_units.py`` fails when dkimpy changes
under us.
"""

from __future__ import annotations

from typing import Any

import dkim
import dkim.crypto
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

ORIGINAL = dkim.crypto.RSASSA_PKCS1_v1_5_sign
ORIGINAL_PARSE = dkim.crypto.parse_pem_private_key
_HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}
_KEYS: dict[int, rsa.RSAPrivateKey] = {}
_PARSED: dict[bytes, dict[str, Any]] = {}


def _key(pk: dict[str, Any]) -> rsa.RSAPrivateKey:
    key = _KEYS.get(pk["modulus"])
    if key is None:
        if len(_KEYS) > 64:
            _KEYS.clear()
        numbers = rsa.RSAPrivateNumbers(
            p=pk["prime1"], q=pk["prime2"], d=pk["privateExponent"], dmp1=pk["exponent1"],
            dmq1=pk["exponent2"], iqmp=pk["coefficient"],
            public_numbers=rsa.RSAPublicNumbers(pk["publicExponent"], pk["modulus"]))
        key = _KEYS[pk["modulus"]] = numbers.private_key()
    return key


def sign(hash: Any, private_key: dict[str, Any]) -> bytes:
    """dkimpy's ``RSASSA_PKCS1_v1_5_sign(hash, private_key)``, by OpenSSL."""
    algorithm = _HASHES.get(hash.name.lower())
    if algorithm is None:
        return bytes(ORIGINAL(hash, private_key))
    return _key(private_key).sign(hash.digest(), padding.PKCS1v15(),
                                  utils.Prehashed(algorithm()))


def parse_pem_private_key(data: bytes) -> dict[str, Any]:
    """dkimpy's ``parse_pem_private_key``, once per key (dkimpy only reads the result)."""
    parsed = _PARSED.get(data)
    if parsed is None:
        if len(_PARSED) > 64:
            _PARSED.clear()
        parsed = _PARSED[data] = ORIGINAL_PARSE(data)
    return parsed


def install() -> None:
    """Make dkimpy sign RSA with OpenSSL and keep parsed keys (idempotent)."""
    for name, ours, theirs in (("RSASSA_PKCS1_v1_5_sign", sign, ORIGINAL),
                               ("parse_pem_private_key", parse_pem_private_key,
                                ORIGINAL_PARSE)):
        current = getattr(dkim, name, None)
        if current is ours:
            continue
        if current is not theirs:
            raise RuntimeError(f"dkimpy changed: dkim.{name} is not dkim.crypto's; "
                               "review postroom.signing.rsa_openssl")
        setattr(dkim, name, ours)
