"""The deliverability sections of the profile: ``[srs]``, ``[dkim]``, ``[arc]``, ``[mta_sts]``.

Kept apart from ``profile.py`` so that one concept (how our mail is trusted elsewhere) reads
in one place; ``Profile`` has one field line for each. Keys and secrets are files in the
site home (``SITE/keys/``), never values in the profile.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

KEYS_DIR = "keys"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _domains(v: list[str]) -> list[str]:
    return [d.strip().lower().rstrip(".") for d in v]


class SrsSection(_Section):
    """Sender Rewriting Scheme for mail forwarded to other domains."""

    enabled: bool = Field(True, description="rewrite the envelope sender of forwarded "
                          "outside mail to an SRS0 address in the primary domain")
    exclude_domains: list[str] = Field(
        default_factory=list, description="sender domains never rewritten (and their "
        "subdomains): e.g. partners whose SPF lists this host")
    secret_file: str = Field(f"{KEYS_DIR}/srs.secret",
                             description="secrets, newest first (postroom srs rotate)")
    max_age: int = Field(21, ge=1, le=365,
                         description="days an SRS address is honoured for bounces")

    @field_validator("exclude_domains")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return _domains(v)


class DkimSection(_Section):
    """DKIM signing of mail that leaves from here (submission, local, lists, notices)."""

    enabled: bool = True
    keys_dir: str = Field(f"{KEYS_DIR}/dkim", description="DOMAIN.SELECTOR.key files")
    selectors: dict[str, str] = Field(
        default_factory=dict, description="domain -> selector to sign with; a domain "
        "not named signs with its oldest key")
    algorithm: Literal["rsa", "ed25519"] = Field(
        "rsa", description="what postroom dkim keygen makes when not told")

    @field_validator("selectors")
    @classmethod
    def _lower(cls, v: dict[str, str]) -> dict[str, str]:
        return {k.strip().lower().rstrip("."): s.strip() for k, s in v.items()}


class ArcSection(_Section):
    """ARC (RFC 8617) sealing of forwarded and list mail."""

    enabled: bool = True
    authserv_id: str = Field("", description="our Authentication-Results id; "
                             "empty: site.hostname")
    trusted_authserv_ids: list[str] = Field(
        default_factory=list, description="upstream relays whose Authentication-Results "
        "are taken as they are, not computed again")

    @field_validator("trusted_authserv_ids")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return _domains(v)


class MtaStsSection(_Section):
    """MTA-STS (RFC 8461) for outbound mail by MX."""

    enabled: bool = True
    cache: str = Field("state/mta-sts.json", description="policies fetched, kept for "
                       "their max_age")
    ca_file: str = Field("", description="CAs (PEM) for policy hosts and MX certificates; "
                         "empty = the system's")
    https_port: int = Field(443, ge=1, le=65535, description="policy host port (tests)")
