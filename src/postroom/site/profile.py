"""The site profile, ``SITE/postroom.toml``, as a pydantic model.

Every key is declared here, with its default, its limits and its type. Types are strict:
``port = "2525"`` or ``quiescent = "no"`` is an error naming the key, not a value pydantic
guesses at. The one conversion is a duration (``"5d"``, or a number of seconds).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from postroom.site.duration import Duration
from postroom.site.profile_deliverability import (
    ArcSection,
    DkimSection,
    MtaStsSection,
    SrsSection,
)
from postroom.site.profile_lists import ListsSection
from postroom.site.profile_ops import AlertsSection, BackupSection, CheckSection, ExportSection
from postroom.site.profile_web import WebSection

DEFAULT_LOG_FILE = "log/mail.log"
# The smallest limits.message_size a site may set. RFC 5321 (4.5.3.1.7) asks a server to
# take messages of at least 64 KiB; smaller limits are for tests of the limit itself.
MIN_MESSAGE_SIZE = 1024



class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SiteSection(_Section):
    hostname: str = Field(description="this host's name: HELO, Received, Reporting-MTA")
    domains: list[str] = Field(description="local domains: aliases, forwards, lists, local users")
    host_names: list[str] = Field(default_factory=list, description="other names of this host")
    hosted_domains: list[str] = Field(default_factory=list,
                                      description="virtual domains routed by virtusertable only")
    postmaster: str = "postmaster"
    role: Literal["hub", "null-client"] = "hub"
    hub: str = Field("", description="null-client role: the hub every message goes to")
    quiescent: bool = False

    @field_validator("domains", "host_names", "hosted_domains")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [d.strip().lower().rstrip(".") for d in v]

    @field_validator("domains")
    @classmethod
    def _some_domain(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one local domain is needed")
        return v


LookupStep = Literal["aliases", "forwards", "lists", "local"]
DEFAULT_ORDER: tuple[LookupStep, ...] = ("aliases", "forwards", "lists", "local")


class MapsSection(_Section):
    aliases: list[str] = Field(default_factory=list)
    forwards: list[str] = Field(default_factory=list)
    virtusertable: list[str] = Field(default_factory=list)
    mailertable: list[str] = Field(default_factory=list)
    local_users: list[str] = Field(default_factory=list)
    order: list[LookupStep] = Field(default_factory=lambda: list(DEFAULT_ORDER),
                                    description="lookup order for a local name")


class RoutingSection(_Section):
    local_parts_case_sensitive: bool = False
    detail_separator: str = Field("+", description='"" turns +detail handling off')
    max_alias_depth: int = Field(20, ge=1, le=100)
    smart_host: str = Field("", description="relay host for all non-local mail, e.g. [relay]:25")


class NetworksSection(_Section):
    inbound: list[str] = Field(default_factory=list,
                               description="trusted upstream relays that deliver our domains")
    relay: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"],
                             description="internal clients that may relay anywhere")

    @field_validator("inbound", "relay")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not a network; write e.g. 192.0.2.0/24") from None
        return v


class Listener(_Section):
    name: str
    role: Literal["mx", "submission", "submissions"]
    address: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


# AEAD suites with forward secrecy only (no CBC: LUCKY13), for TLS 1.2; TLS 1.3 has no others
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS"


class TlsSection(_Section):
    cert: str = "tls/cert.pem"
    key: str = "tls/key.pem"
    ciphers: str = Field(DEFAULT_CIPHERS, description="OpenSSL cipher string for TLS 1.2 "
                         "(TLS 1.3 suites are all AEAD and not affected)")

    @field_validator("ciphers")
    @classmethod
    def _ciphers(cls, v: str) -> str:
        import ssl  # only when the key is set: most commands never touch TLS

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(v)
        except ssl.SSLError:
            raise ValueError(f"OpenSSL can select no cipher from {v!r}; write an OpenSSL "
                             f"cipher string, e.g. the default {DEFAULT_CIPHERS!r}") from None
        return v


class DatabaseSection(_Section):
    url: str = Field("", description="SQLAlchemy URL; empty means SITE/postroom.db (SQLite)")


class LimitsSection(_Section):
    message_size: int = Field(50 * 1024 * 1024, ge=MIN_MESSAGE_SIZE)
    recipients: int = Field(1000, ge=1)
    # at most 64 KiB: the DATA reader relies on one read emptying the stream's buffer
    line_length: int = Field(998, ge=80, le=65536)
    header_size: int = Field(1024 * 1024, ge=1024)
    idle_timeout: Duration = 300.0
    auth_failures: int = Field(5, ge=1, description="failed AUTH per client before a pause")
    auth_pause: Duration = 60.0
    # connection limits (postroom.smtp.limits); a client is an address, or an IPv6 /64
    connections: int = Field(1000, ge=1, description="connections at once per listener, "
                             "all clients, all intake processes together")
    client_connections: int = Field(50, ge=1, description="connections at once per client "
                                    "on a listener")
    client_rate: int = Field(200, ge=0, description="connections per client on a listener "
                             "within client_rate_window; 0 = no limit")
    client_rate_window: Duration = Field(60.0, gt=0)
    session_commands: int = Field(5000, ge=0, description="replies in one session (one per "
                                  "command); 0 = no limit")
    session_errors: int = Field(20, ge=0, description="4xx/5xx replies in a session since "
                                "its last accepted message; 0 = no limit")
    session_time: Duration = Field(3600.0, gt=0, description="a whole session, connect to "
                                   "close, on top of idle_timeout")
    trusted_exempt: bool = Field(True, description="clients in networks.relay and "
                                 "networks.inbound are held to the listener total only")


class SmtpSection(_Section):
    forbid_bare_newline: bool = Field(
        True, description="refuse DATA with bare LF line endings, like Postfix's switch")
    sender_must_match_login: bool = True
    workers: int = Field(0, ge=0, description="intake processes; 0 = one per core")


class QueueSection(_Section):
    lifetime: Duration = 5 * 86400.0
    delay_warning: Duration = 4 * 3600.0
    retry_initial: Duration = 300.0
    retry_max: Duration = 3600.0
    run_interval: Duration = 1.0
    # counted server-wide in queue/limits, which has room for 256 per key
    concurrency: int = Field(20, ge=1, le=256)
    destination_concurrency: int = Field(5, ge=1, le=256)
    recipients_per_transaction: int = Field(100, ge=1)
    min_free: int = Field(100 * 1024 * 1024, ge=0, description="bytes: intake refuses mail "
                          "(452 4.3.1) while the queue's file system has less free")


class RelayHost(_Section):
    """Settings for one relay host (mailertable ``relay:`` target or the smart host)."""

    host: str = Field(description="as written in the route, e.g. [smtp.staffmail.example.ac.uk]")
    port: int = Field(25, ge=1, le=65535)
    tls: Literal["opportunistic", "required", "verify", "never"] = Field(
        "opportunistic", description="verify: required, and the certificate must be valid "
        "for the host name (or IP) of the route")
    ca_file: str = Field("", description="CA certificates (PEM) for tls = verify; empty = "
                         "the system's")
    username: str = ""
    password_file: str = Field("", description="file holding the password (keep it 0600)")


class DeliverySection(_Section):
    smtp_port: int = Field(25, ge=1, le=65535, description="port for MX deliveries (tests)")
    connect_timeout: Duration = 30.0
    command_timeout: Duration = 300.0
    prog_timeout: Duration = 300.0
    starttls: Literal["opportunistic", "required", "never"] = "opportunistic"
    relays: list[RelayHost] = Field(default_factory=list)


class DnsSection(_Section):
    nameservers: list[str] = Field(
        default_factory=list, description="resolver addresses, host or host:port; empty = system")
    timeout: Duration = 10.0


class LogSection(_Section):
    file: str = DEFAULT_LOG_FILE


class Profile(_Section):
    site: SiteSection
    maps: MapsSection = Field(default_factory=MapsSection)
    routing: RoutingSection = Field(default_factory=RoutingSection)
    networks: NetworksSection = Field(default_factory=NetworksSection)
    listeners: list[Listener] = Field(default_factory=list)
    tls: TlsSection = Field(default_factory=TlsSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    smtp: SmtpSection = Field(default_factory=SmtpSection)
    queue: QueueSection = Field(default_factory=QueueSection)
    delivery: DeliverySection = Field(default_factory=DeliverySection)
    dns: DnsSection = Field(default_factory=DnsSection)
    log: LogSection = Field(default_factory=LogSection)
    srs: SrsSection = Field(default_factory=SrsSection)
    dkim: DkimSection = Field(default_factory=DkimSection)
    arc: ArcSection = Field(default_factory=ArcSection)
    mta_sts: MtaStsSection = Field(default_factory=MtaStsSection)
    export: ExportSection = Field(default_factory=ExportSection)
    backup: BackupSection = Field(default_factory=BackupSection)
    check: CheckSection = Field(default_factory=CheckSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    lists: ListsSection = Field(default_factory=ListsSection)
    web: WebSection = Field(default_factory=WebSection)
