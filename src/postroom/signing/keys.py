"""DKIM keys in the site home: ``SITE/keys/dkim/DOMAIN.SELECTOR.key`` (``[dkim] keys_dir``).

    rsa       PEM, PKCS#1 (``-----BEGIN RSA PRIVATE KEY-----``), 2048 bits
    ed25519   the 32-byte seed in base64, one line (what dkimpy and ``dknewkey`` use)

The file name is the whole index: the domain, then the selector (no dots in selectors we
make), so ``ls`` shows what a site can sign for. A domain signs with the selector
``[dkim] selectors`` names, else with its oldest key (the one DNS has had longest: a key
just made is not used before it is named); rotation is a new key under a new selector,
published in DNS, then named in the profile (``docs/operations.md``). ARC seals
need RSA (dkimpy signs ARC sets with RSA only), so ``arc_key`` looks for one separately.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postroom.site import Site

SUFFIX = ".key"
RSA_BITS = 2048
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


@dataclass(frozen=True, slots=True)
class Key:
    domain: str
    selector: str
    algorithm: str     # "rsa" | "ed25519"
    private: bytes     # as dkimpy takes it
    path: Path
    mtime: float

    @property
    def signature_algorithm(self) -> bytes:
        return b"ed25519-sha256" if self.algorithm == "ed25519" else b"rsa-sha256"

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def public_b64(self) -> str:
        if self.algorithm == "ed25519":
            seed = base64.b64decode(self.private)
            pub = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
            raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return base64.b64encode(raw).decode()
        key = serialization.load_pem_private_key(self.private, password=None)
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def dns_record(self) -> str:
        """The TXT record to publish at ``dns_name``."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public_b64()}"


def txt_strings(record: str) -> str:
    """A record as quoted zone-file strings of at most 255 characters each."""
    return " ".join(f'"{record[i:i + 255]}"' for i in range(0, len(record), 255))


def key_from_file(path: Path) -> Key | None:
    name = path.name
    if not name.endswith(SUFFIX):
        return None
    domain, dot, selector = name[:-len(SUFFIX)].rpartition(".")
    if not dot or not domain or not selector:
        return None
    data = path.read_bytes().strip()
    algorithm = "rsa" if data.startswith(b"-----BEGIN") else "ed25519"
    return Key(domain.lower(), selector, algorithm, data, path, path.stat().st_mtime)


def generate(keys_dir: Path, domain: str, selector: str, algorithm: str) -> Key:
    """Write a new key (0600); refuses to overwrite one."""
    if not _SELECTOR.match(selector):
        raise ValueError(f"{selector!r} is not a selector: letters, digits and '-' only")
    domain = domain.strip().lower().rstrip(".")
    if algorithm == "ed25519":
        seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())
        data = base64.b64encode(seed) + b"\n"
    elif algorithm == "rsa":
        data = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption())
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}; use rsa or ed25519")
    keys_dir.mkdir(parents=True, exist_ok=True)
    path = keys_dir / f"{domain}.{selector}{SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    key = key_from_file(path)
    assert key is not None
    return key


class KeyRing:
    """The site's DKIM keys, read once per runtime."""

    def __init__(self, keys: list[Key], selectors: dict[str, str]) -> None:
        self.keys = sorted(keys, key=lambda k: (k.domain, k.mtime, k.selector))
        self._signing: dict[str, Key] = {}
        for k in self.keys:  # oldest first within a domain
            wanted = selectors.get(k.domain)
            if (wanted is None and k.domain not in self._signing) or wanted == k.selector:
                self._signing[k.domain] = k

    @classmethod
    def load(cls, site: Site) -> KeyRing:
        d = site.profile.dkim
        directory = site.path(d.keys_dir)
        keys = []
        try:
            entries = sorted(directory.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            entries = []
        for path in entries:
            key = key_from_file(path)
            if key is not None:
                keys.append(key)
        return cls(keys, d.selectors)

    def __bool__(self) -> bool:
        return bool(self._signing)

    def for_domain(self, domain: str) -> Key | None:
        """The key to sign mail of ``domain`` with: its own, else a parent domain's (a
        parent's signature still aligns with the From domain under relaxed DMARC)."""
        labels = domain.lower().rstrip(".").split(".")
        for i in range(len(labels) - 1):
            key = self._signing.get(".".join(labels[i:]))
            if key is not None:
                return key
        return None

    def arc_key(self, domain: str) -> Key | None:
        """An RSA key of ``domain`` (the selected one if it is RSA), for ARC seals."""
        key = self._signing.get(domain)
        if key is not None and key.algorithm == "rsa":
            return key
        return next((k for k in self.keys if k.domain == domain and k.algorithm == "rsa"),
                    None)
