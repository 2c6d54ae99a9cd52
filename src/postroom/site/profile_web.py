"""The ``[web]`` section of the site profile: the web interface and REST API
(``postroom.web``), served by ``postroom serve`` on a listener of its own."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WebSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    enabled: bool = Field(False, description="serve the web interface and REST API")
    address: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0 = any free port (tests)")
    processes: int = Field(2, ge=1, le=64, description="web processes sharing the "
                           "listener when serve runs intake processes")
    threads: int = Field(0, ge=0, le=256, description="threads per web process for the "
                         "pages that read the store; 0 = 2 with SQLite, 16 with PostgreSQL")
    tls: bool = Field(False, description="HTTPS with the site's [tls] certificate")
    base_url: str = Field("", description="the public URL, e.g. https://lists.example.ac.uk; "
                          "used in mail (one-click unsubscribe, confirmation links); "
                          "empty = no web links in mail")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="reverse proxies whose X-Forwarded-For/-Proto "
        "headers are believed (addresses); empty = none")
    export_networks: list[str] = Field(
        default_factory=list, description="clients that may fetch /export/valid-addresses "
        "without a token")
    metrics_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="clients that may read /metrics without a token")
    signup_min_seconds: float = Field(3.0, ge=0, description="a sign-up form sent back "
                                      "sooner than this is refused (robots)")
    signup_per_address_per_day: int = Field(3, ge=1, description="confirmation mails per "
                                            "target address and day")
    signup_per_client_per_day: int = Field(20, ge=1, description="confirmation mails asked "
                                           "by one client address per day")
    login_failures: int = Field(5, ge=1, description="failed logins before an account "
                                "is locked")
    lockout_minutes: int = Field(15, ge=1)
    session_hours: int = Field(12, ge=1)

    @field_validator("trusted_proxies", "export_networks", "metrics_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an address or network; write e.g. "
                                 "192.0.2.10 or 192.0.2.0/24") from None
        return v

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} must start with http:// or https://")
        return v.rstrip("/")
