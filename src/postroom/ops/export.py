"""The valid-address export (the seed's ``enumaddresses``): every address the site takes,
for the upstream relays, which reject at their RCPT what is not in it.

``collect(runtime)`` gathers candidates from the maps (aliases, forwards, local users in
each mail domain; virtusertable keys of the hosted domains and any local domain that has
entries) and from the list store (each list and its ``SERVICE_SUFFIXES`` forms), and keeps
only those the resolver takes (``routing.verdict.takes``: the verdict RCPT gives, with
a fast path for plain forwards), so the export and RCPT agree. A domain whose
virtusertable catch-all takes an unknown name is exported as ``@domain``.

``export(runtime)`` writes ``SITE/export/valid-addresses.txt`` (one address a line, sorted)
and ``SITE/export/relay_recipients`` (Postfix ``relay_recipient_maps``: ``addr OK``), each
with ``safeio.atomic_replace``. The shrink guard: a run that would drop more than
``max_shrink`` percent of the addresses in the current ``valid-addresses.txt`` writes
nothing (a half-loaded map must not make the relays reject real users) unless forced.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from postroom.errors import PostroomError
from postroom.routing import verdict
from postroom.runtime import Runtime
from postroom.safeio import atomic_replace
from postroom.store.listnames import SERVICE_SUFFIXES

EXPORT_DIR = "export"
PLAIN = "valid-addresses.txt"
POSTFIX = "relay_recipients"
DEFAULT_MAX_SHRINK = 10.0


class ShrinkRefused(PostroomError):
    """The new export would drop more than the threshold of the old one's addresses."""

    exit_code = 75  # EX_TEMPFAIL: fix the maps (or confirm with --force) and run again


@dataclass(slots=True)
class ExportResult:
    addresses: list[str]
    per_domain: dict[str, int] = field(default_factory=dict)
    previous: int | None = None  # addresses in the old export, None when there was none
    written: bool = False
    directory: Path | None = None

    def summary(self) -> str:
        parts = ", ".join(f"{d} {n}" for d, n in sorted(self.per_domain.items()))
        was = "" if self.previous is None else f" (was {self.previous})"
        return f"exported {len(self.addresses)} addresses{was}: {parts or 'none'}"


def list_pairs(rt: Runtime) -> list[tuple[str, str]]:
    """(name, domain) of every list in the store; none when the store is not made yet."""
    site = rt.site
    if not site.profile.database.url:
        path = site.home / "postroom.db"
        if not path.exists():
            return []
        from postroom.store.listnames import read_sqlite

        return read_sqlite(path) or []
    from postroom.store.lists import StoreLists, all_lists

    if len(StoreLists.load(site)) == 0:  # no store, not upgraded yet, or no lists
        return []
    return [(i.name, i.domain) for i in all_lists(site)]


def export_domains(rt: Runtime, *, host_names: bool = False) -> list[str]:
    """The mail domains (``site.domains``; with ``host_names`` every local domain) and the
    hosted domains, in profile order."""
    p = rt.site.profile.site
    local = sorted(rt.site.local_domains) if host_names else list(p.domains)
    out: list[str] = []
    for d in (*local, *p.hosted_domains):
        if d not in out:
            out.append(d)
    return out


def _names(group: Iterable[object]) -> set[str]:
    out: set[str] = set()
    for m in group:
        out.update(m.entries)  # type: ignore[attr-defined]
    return out


def collect(rt: Runtime, *, host_names: bool = False) -> ExportResult:
    """Every address the resolver takes, sorted, with counts per domain.

    The candidates are kept as local parts per domain, so each is asked of the resolver
    as (local, domain) as it stands and only a taken one becomes an address string."""
    site, maps, resolver = rt.site, rt.maps, rt.resolver
    fold = not site.profile.routing.local_parts_case_sensitive
    domains = export_domains(rt, host_names=host_names)
    local_domains = [d for d in domains if d in site.local_domains]
    names = _names(maps.aliases) | _names(maps.forwards) | _names(maps.local_users)
    names.discard("")
    extra: dict[str, set[str]] = {}  # domain: local parts besides ``names``
    for name, domain in list_pairs(rt):
        forms = [name.lower() + s for s in ("", *SERVICE_SUFFIXES)]
        names.update(forms)
        domain = domain.lower()
        if domain not in local_domains and (domain in site.local_domains
                                            or domain in site.hosted_domains):
            # a list in a host name or a hosted domain: its addresses there too
            extra.setdefault(domain, set()).update(forms)
    catch_alls: set[str] = set()
    exported = set(domains)
    for m in maps.virtusertable:
        for key in m.entries:
            local, _, domain = key.rpartition("@")
            if domain not in exported:
                continue
            if not local:
                catch_alls.add(domain)
            elif "*" not in local:  # user+*@domain: the relays strip the detail themselves
                extra.setdefault(domain, set()).add(local.lower() if fold else local)
    takes = verdict.takes
    outside: dict[str, bool] = {}  # target domains' answers, asked once each
    taken: list[str] = []
    per_domain: dict[str, int] = {}

    def ask(domain: str, candidates: Iterable[str]) -> None:
        found = [f"{n}@{domain}" for n in candidates if takes(resolver, n, domain, outside)]
        if found:
            taken.extend(found)
            per_domain[domain] = per_domain.get(domain, 0) + len(found)

    for domain in local_domains:
        ask(domain, names)
    for domain, more in extra.items():
        ask(domain, more - names if domain in local_domains else more)
    for domain in sorted(catch_alls):
        probe = f"postroom-export-probe-{secrets.token_hex(8)}@{domain}"
        if resolver.resolve(probe).refusal is None:
            taken.append(f"@{domain}")
            per_domain[domain] = per_domain.get(domain, 0) + 1
    taken.sort()
    return ExportResult(taken, per_domain)


def read_previous(directory: Path) -> int | None:
    """Addresses in the current plain export, None when there is none."""
    try:
        data = (directory / PLAIN).read_bytes()
    except FileNotFoundError:
        return None
    return sum(1 for line in data.split(b"\n") if line.strip())


def render(addresses: list[str]) -> tuple[bytes, bytes]:
    """(valid-addresses.txt, relay_recipients) contents."""
    if not addresses:
        return b"", b""
    plain = "\n".join(addresses) + "\n"
    postfix = " OK\n".join(addresses) + " OK\n"
    return plain.encode("utf-8"), postfix.encode("utf-8")


def export(rt: Runtime, *, max_shrink: float = DEFAULT_MAX_SHRINK, force: bool = False,
           host_names: bool = False) -> ExportResult:
    """Collect and write the export; ShrinkRefused (nothing written) when the guard trips."""
    directory = rt.site.home / EXPORT_DIR
    result = collect(rt, host_names=host_names)
    result.directory = directory
    result.previous = previous = read_previous(directory)
    if previous and not force:
        dropped = previous - len(result.addresses)
        if dropped > 0 and dropped * 100 > max_shrink * previous:
            raise ShrinkRefused(
                f"export would shrink from {previous} to {len(result.addresses)} addresses "
                f"({dropped * 100 / previous:.1f} % fewer, more than {max_shrink:g} %); "
                f"kept the old files in {directory}. Check the maps and the list store "
                "(a half-loaded map?), then run again, or use --force if the drop is meant")
    plain, postfix = render(result.addresses)
    directory.mkdir(mode=0o755, exist_ok=True)
    # relay_recipients first: the plain list is the guard's reference, written last
    atomic_replace(directory / POSTFIX, postfix, mode=0o644)
    atomic_replace(directory / PLAIN, plain, mode=0o644)
    result.written = True
    return result
