"""The destination policy: port, TLS mode, credentials, and the TLS contexts that go with
the modes (Postfix's smtp_tls_policy.c).

    opportunistic  STARTTLS when offered, no certificate checks (RFC 7435); SNI is the
                   MX host's name
    required       the same, but without TLS no mail goes
    verify         the chain must lead to a trusted CA (``ca_file``, else the system's) and
                   the certificate must name the route's own host: for ``[host]`` and
                   ``[IP]`` routes the same, for MX routes the domain (an MX name can be
                   spoofed), never the name DNS answered with; under an MTA-STS policy
                   (``mx_names``) the MX host's name, which the policy vouches for
    never          STARTTLS is not tried
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from postroom.delivery.mx import ip_literal
from postroom.delivery.smtp.trouble import TargetFailed, fail, reason
from postroom.errors import TemporaryFailure

TlsMode = Literal["opportunistic", "required", "verify", "never"]


@dataclass(frozen=True, slots=True)
class Policy:
    """How to talk to one destination: port, TLS mode and (relays) credentials."""

    port: int = 25
    tls: TlsMode = "opportunistic"
    username: str = ""
    password_file: Path | None = None
    ca_file: Path | None = None  # tls = verify: trust these CAs (None: the system's)
    # MTA-STS enforce (delivery.mtasts): only MX hosts matching these, verified by name
    mx_names: tuple[str, ...] = ()
    mx_policy: str = ""  # the domain whose policy it is, for the failure text

    def password(self) -> str:
        if self.password_file is None:
            return ""
        try:
            return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise TemporaryFailure(451, "4.3.5", f"cannot read the password for "
                                   f"{self.username}: {e.strerror}: {self.password_file}"
                                   ) from None


def _opportunistic() -> ssl.SSLContext:
    """Opportunistic TLS (RFC 7435): encrypt, do not authenticate the server."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class TlsContexts:
    """The client's TLS contexts: one without checks, one verifying per CA file."""

    def __init__(self) -> None:
        self.opportunistic = _opportunistic()
        self._verifying: dict[Path | None, ssl.SSLContext] = {}

    def choose(self, mode: TlsMode, policy: Policy, host: str, route_name: str,
               remote: str) -> tuple[ssl.SSLContext, str | None]:
        """The context and the name to send (and, for verify, to check) for a STARTTLS."""
        if mode == "verify":
            return self.verifying(policy.ca_file, remote), host if policy.mx_names \
                else route_name
        return self.opportunistic, None if ip_literal(host) else host

    def verifying(self, ca_file: Path | None, remote: str) -> ssl.SSLContext:
        context = self._verifying.get(ca_file)
        if context is None:
            try:
                context = ssl.create_default_context(
                    ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
            except (OSError, ssl.SSLError) as e:
                raise fail("4.7.5", f"cannot load the CA certificates {ca_file} to verify "
                           f"{remote}: {getattr(e, 'strerror', None) or e}", remote) from None
            self._verifying[ca_file] = context
        return context


def tls_failed(remote: str, e: BaseException, mode: TlsMode) -> TargetFailed:
    """A failed handshake: the next address, or (opportunistic) this one in plain text."""
    error = TemporaryFailure(451, "4.7.5", f"TLS handshake with {remote} failed: "
                             f"{reason(e)}", remote=remote)
    return TargetFailed(error, plain_retry=mode == "opportunistic")
