"""The site home and its profile, ``SITE/postroom.toml``, validated with pydantic.

Every key of the profile is declared here; an unknown key, a wrong type or a missing file is
a ConfigError naming the file, the line, the key and the fix. Paths in the profile are
relative to the site home.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from postroom.errors import ConfigError

PROFILE_NAME = "postroom.toml"
QUIESCENT_RECHECK = 0.1  # seconds: `postroom quiesce` takes effect within this

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """``"5d"`` -> 432000.0; plain numbers are seconds."""
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 5m, 4h or 5d")
    return float(m.group(1)) * _UNITS[m.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class MapsSection(_Section):
    aliases: list[str] = Field(default_factory=list)
    forwards: list[str] = Field(default_factory=list)
    virtusertable: list[str] = Field(default_factory=list)
    mailertable: list[str] = Field(default_factory=list)
    local_users: list[str] = Field(default_factory=list)
    order: list[Literal["aliases", "forwards", "lists", "local"]] = Field(
        default_factory=lambda: ["aliases", "forwards", "lists", "local"],
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


class TlsSection(_Section):
    cert: str = "tls/cert.pem"
    key: str = "tls/key.pem"


class DatabaseSection(_Section):
    url: str = Field("", description="SQLAlchemy URL; empty means SITE/postroom.db (SQLite)")


class LimitsSection(_Section):
    message_size: int = Field(50 * 1024 * 1024, ge=1024)
    recipients: int = Field(1000, ge=1)
    # at most 64 KiB: the DATA reader relies on one read emptying the stream's buffer
    line_length: int = Field(998, ge=80, le=65536)
    header_size: int = Field(1024 * 1024, ge=1024)
    idle_timeout: Duration = 300.0
    auth_failures: int = Field(5, ge=1, description="failed AUTH per client before a pause")
    auth_pause: Duration = 60.0


class SmtpSection(_Section):
    forbid_bare_newline: bool = Field(
        True, description="refuse DATA with bare LF line endings, like Postfix's switch")
    sender_must_match_login: bool = True
    workers: int = Field(0, ge=0, description="intake processes; 0 = two per core")


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
    file: str = "log/mail.log"


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


class Site:
    """A site home: its directory, its profile and the paths of everything inside it."""

    def __init__(self, home: Path, profile: Profile) -> None:
        self.home = home
        self.profile = profile
        self._quiescent_checked = -1.0
        self._quiescent_flag = False

    @property
    def profile_path(self) -> Path:
        return self.home / PROFILE_NAME

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.home / p

    @property
    def queue_dir(self) -> Path:
        return self.home / "queue"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def mail_dir(self) -> Path:
        return self.home / "mail"

    @property
    def log_path(self) -> Path:
        return self.path(self.profile.log.file)

    @property
    def database_url(self) -> str:
        return self.profile.database.url or f"sqlite:///{self.home / 'postroom.db'}"

    @property
    def quiescent(self) -> bool:
        """Quiescent by profile or by ``postroom quiesce`` (a flag file that survives restarts).

        The flag file is looked at no more than every QUIESCENT_RECHECK seconds: intake asks
        on every connection and transaction, and a stat per ask was a measurable cost."""
        if self.profile.site.quiescent:
            return True
        if time.monotonic() - self._quiescent_checked >= QUIESCENT_RECHECK:
            return self.quiescent_now()
        return self._quiescent_flag

    def quiescent_now(self) -> bool:
        """Look at the flag file now (a new connection is refused without delay)."""
        self._quiescent_flag = (self.profile.site.quiescent
                                or (self.state_dir / "quiescent").exists())
        self._quiescent_checked = time.monotonic()
        return self._quiescent_flag

    def server_pid(self) -> int | None:
        """The pid of a running ``postroom serve`` for this site, from state/serve.pid."""
        try:
            pid = int((self.state_dir / "serve.pid").read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        try:  # a stale file may name a pid reused by another program: never signal that
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid  # no /proc here: trust the file
        return pid if b"postroom" in cmdline and b"serve" in cmdline else None

    @property
    def local_domains(self) -> frozenset[str]:
        s = self.profile.site
        return frozenset([*s.domains, *s.host_names, s.hostname.lower()])

    @property
    def hosted_domains(self) -> frozenset[str]:
        return frozenset(self.profile.site.hosted_domains)


def resolve_home(site: str | os.PathLike[str] | None) -> Path:
    """``--site`` wins, then ``POSTROOM_SITE``, then the current directory."""
    chosen = site or os.environ.get("POSTROOM_SITE") or "."
    return Path(chosen).resolve()


def load(home: str | os.PathLike[str] | None = None) -> Site:
    """Read and validate ``HOME/postroom.toml``; raise ConfigError on any problem."""
    root = resolve_home(home)
    path = root / PROFILE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "no site profile here",
                          hint="run 'postroom init DIR' or pass --site DIR / set POSTROOM_SITE"
                          ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = _toml_error_line(str(e))
        raise ConfigError(str(path), f"not valid TOML: {e}", line=line,
                          hint="check quoting and brackets on that line") from None
    try:
        profile = Profile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc)
        raise ConfigError(str(path), _describe(err), line=_line_of(text, err["loc"]),
                          field=field, hint=_hint(err, loc)) from None
    site = Site(root, profile)
    _check_files(site, text)
    return site


def _check_files(site: Site, text: str) -> None:
    for key in ("aliases", "forwards", "virtusertable", "mailertable", "local_users"):
        for rel in getattr(site.profile.maps, key):
            if not site.path(rel).is_file():
                raise ConfigError(str(site.profile_path), f"file {rel!r} does not exist",
                                  line=_line_of(text, ("maps", key)), field=f"maps.{key}",
                                  hint=f"create {site.path(rel)} or remove it from the list")


def _describe(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    return str(err["msg"])


def _hint(err: Any, loc: list[str]) -> str:
    if err["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        return f"remove it or use one of: {', '.join(known)}" if known else "remove it"
    if err["type"] == "missing":
        return f"add '{loc[-1]} = ...' to the [{'.'.join(loc[:-1]) or 'top'}] table"
    expected = Profile
    return f"give {'.'.join(loc)} a valid value" if expected else ""


def _known_keys(section: list[str]) -> list[str]:
    model: Any = Profile
    for part in section:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = args[0] if args and isinstance(args[0], type) else ann
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return sorted(model.model_fields)


def _toml_error_line(message: str) -> int | None:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None


def _line_of(text: str, loc: tuple[Any, ...] | list[Any]) -> int | None:
    """Best-effort line number of a key path in TOML text (tables, arrays of tables, keys)."""
    parts = [p for p in loc if isinstance(p, str)]
    index = next((p for p in loc if isinstance(p, int)), None)
    lines = text.splitlines()
    section: str | None = None
    seen: dict[str, int] = {}
    best: int | None = None
    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        m = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if m:
            section = m.group(1)
            seen[section] = seen.get(section, -1) + 1
            if len(parts) == 1 and section == parts[0]:
                best = best or no
            continue
        key = line.split("=", 1)[0].strip() if "=" in line else None
        if key is None:
            continue
        in_table = len(parts) >= 2 and section == parts[0]
        same_entry = index is None or seen.get(section or "") == index
        if in_table and key == parts[1] and same_entry:
            return no
        if len(parts) == 1 and section is None and key == parts[0]:
            return no
        if in_table and index is not None and same_entry:
            best = best or no
    if best is None and parts:
        for no, raw in enumerate(lines, 1):
            if re.match(rf"^\[\[?\s*{re.escape(parts[0])}\s*\]\]?", raw.strip()):
                return no
    return best
