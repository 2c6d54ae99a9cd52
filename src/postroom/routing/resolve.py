"""The resolver: one pure function from an address to its final routes.

``Resolver(site, maps, lists).resolve(address)`` returns every final ``Route`` of the
address after virtusertable, alias, forwarding-map and list expansion, the way
``sendmail -bv`` shows it. Intake calls it at RCPT time, the queue runner at delivery time,
and ``postroom verify`` prints it; no other module decides where mail goes.

The lookup order for a name in a local domain comes from the profile (``maps.order``,
default aliases, forwards, lists, local). Hosted domains use the virtusertable only.
Other domains go by mailertable (exact domain, then ``.parent`` entries), then the smart
host, then MX (mailer ``esmtp`` with the domain as host). An address literal of this host
(loopback, or a listener's address: ``rt@[127.0.0.1]``) is a name in the first local
domain; another one goes by the mailertable (exact entry or ``.``), the smart host, or
straight to that address.

The resolver is also the one judge of an address itself: a relay trick (source route,
``%``, ``!``, quoted ``@``) is refused with ``553 5.7.1 Relaying denied: ...`` and a
malformed address with ``553 5.1.3``, before any map is asked (``Resolution.refused``).
SMTP intake, local submission and ``postroom verify`` all take that verdict
(``Resolution.refusal``), so they never disagree about an address.

An SRS address in a local domain (``SRS0=HHHH=TT=domain=local@``, a bounce of mail we
forwarded) resolves to the original sender when its hash and timestamp are valid, and is
refused with ``550 5.7.1`` and the reason otherwise (``postroom.srs``).
"""

from __future__ import annotations

import ipaddress

from postroom import addresses
from postroom.errors import AddressError
from postroom.routing.maps import ErrorTarget, Map, parse_error
from postroom.routing.mapset import INCLUDE, SiteMaps
from postroom.routing.resolution import (
    BAD_SRS,
    BAD_SYNTAX,
    NO_SUCH_USER,
    RELAY_TRICK,
    ListSource,
    NoLists,
    Resolution,
    Step,
    address_refusal,
    error_route,
)
from postroom.site import Site
from postroom.srs import SrsError, SrsPolicy, is_srs
from postroom.types import Mailer, Route

# the answer's types, importable from here as before
__all__ = ["BAD_SRS", "BAD_SYNTAX", "NO_SUCH_USER", "RELAY_TRICK", "ListSource", "NoLists",
           "Resolution", "Resolver", "Step", "address_refusal", "error_route"]


class Resolver:
    def __init__(self, site: Site, maps: SiteMaps, lists: ListSource | None = None) -> None:
        p = site.profile
        self.primary = p.site.domains[0]
        self.local_domains = site.local_domains
        self.hosted_domains = site.hosted_domains
        self.fold = not p.routing.local_parts_case_sensitive
        self.detail_sep = p.routing.detail_separator
        self.max_depth = p.routing.max_alias_depth
        self.smart_host = p.routing.smart_host
        self.null_client_hub = p.site.hub if p.site.role == "null-client" else ""
        self.order = tuple(p.maps.order)
        self.maps = maps
        self.lists: ListSource = lists or NoLists()
        self.srs = SrsPolicy.from_site(site)
        self._srs_codec = self.srs.codec is not None
        # Merge multi-file maps once: the first file that names a key wins.
        self._aliases = _merge(maps.aliases)
        self._forwards = _merge(maps.forwards)
        self._virtual = _merge(maps.virtusertable)
        self._mailertable = _merge(maps.mailertable)
        self._local = _merge(maps.local_users)
        self._virtual_domains = frozenset(k.rpartition("@")[2] for k in self._virtual)
        # the lookup order for a local name, with the table of each map step
        self._sources = tuple((s, self._aliases if s == "aliases" else self._forwards
                               if s == "forwards" else None) for s in self.order)
        # Map targets repeat, and what an address target is does not change while this
        # resolver lives: each is parsed once, and one outside our domains is its Route.
        self._plans: dict[str, Route | addresses.Address | AddressError] = {}
        own: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        for listener in p.listeners:
            try:
                ip = ipaddress.ip_address(listener.address)
            except ValueError:
                continue
            if not ip.is_unspecified:
                own.add(ip)
        self._own_ips = frozenset(own)

    # -- public -----------------------------------------------------------------------------

    def resolve(self, address: str, *, explain: bool = False,
                sender: str | None = None) -> Resolution:
        """``sender``: with ``explain``, show the SRS rewrite this sender's mail gets."""
        res = Resolution([])
        self._explain = explain
        self._res = res
        try:
            parsed = addresses.parse(address, default_domain=self.primary)
        except AddressError as e:
            route = address_refusal(address.strip("<>"), e)
            res.routes.append(route)
            res.refused = route
            self._note(0, f"{address}: refused before routing: {route.code} {route.status} "
                          f"{route.text}")
            return res
        domain = parsed.domain
        res.local = (domain in self.local_domains or domain in self.hosted_domains
                     or (domain[:1] == "[" and self._own_literal(domain)))
        if self.null_client_hub:
            res.routes.append(Route("relay", self.null_client_hub, str(parsed),
                                    address.strip("<>")))
            self._note(0, f"null-client role: everything goes to {self.null_client_hub}")
            return res
        self._seen: set[tuple[str, str, str]] | None = None
        self._address(address.strip().strip("<>"), parsed, 0, ())
        if explain and res.local and self.srs.active and not self.srs.is_srs(parsed.local):
            self._explain_srs(res, sender)  # (a bounce to an SRS address has no sender)
        return res

    def _explain_srs(self, res: Resolution, sender: str | None) -> None:
        """What the runner does to the envelope sender of forwarded mail (``srs.policy``)."""
        for r in res.routes:
            if r.mailer not in (Mailer.ESMTP, Mailer.RELAY):
                continue
            if sender is None:
                self._note(0, f"{r.address}: forwarded outside: an outside sender becomes "
                              f"SRS0=HASH=TT=domain=local@{self.srs.alias} (SRS)")
                continue
            rewritten = self.srs.return_path(sender, forwarded=True, mailer=r.mailer)
            what = (f"rewritten to <{rewritten}> (SRS)" if rewritten != sender
                    else "kept (SRS does not apply: null, local or excluded sender)")
            self._note(0, f"{r.address}: forwarded outside: envelope sender <{sender}> "
                          f"{what}")

    def _own_literal(self, domain: str) -> bool:
        """An address literal of this host: loopback, or a listener's address."""
        ip = addresses.literal_ip(domain)
        return ip is not None and (ip.is_loopback or ip in self._own_ips or (
            isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None
            and (ip.ipv4_mapped.is_loopback or ip.ipv4_mapped in self._own_ips)))

    # -- expansion --------------------------------------------------------------------------

    def _emit(self, route: Route) -> None:
        routes = self._res.routes
        if routes:  # (the first route is no duplicate: the set is made for a second one)
            seen = self._seen
            if seen is None:
                seen = self._seen = {r[:3] for r in routes}
            key = route[:3]  # (mailer, host, user)
            if key in seen:
                self._note(0, f"{route.address}: duplicate suppressed")
                return
            seen.add(key)
        routes.append(route)

    def _note(self, depth: int, text: str) -> None:
        if self._explain:
            self._res.steps.append(Step(depth, text))

    def _address(self, display: str, parsed: addresses.Address, depth: int,
                 path: tuple[str, ...]) -> None:
        if depth > self.max_depth:
            self._note(depth, f"{display}: alias depth over {self.max_depth}")
            self._emit(error_route(display, 554, "5.4.6", "Too many alias hops (loop?)"))
            return
        domain = parsed.domain
        if domain[:1] == "[" and self._own_literal(domain):
            self._note(depth, f"{display}: {domain} is this host: a name in {self.primary}")
            domain = self.primary
        if domain in self.local_domains:
            local = parsed.local
            if self._srs_codec and is_srs(local):  # SrsPolicy.is_srs, without two calls
                self._srs_bounce(display, local, depth, path)
                return
            if local[:1] == '"':
                local = parsed.bare
            if domain in self._virtual_domains and self._virtusertable(display, local, domain,
                                                                        depth, path):
                return
            self._local_name(display, local, depth, path, domain)
            return
        if domain in self.hosted_domains:
            local = parsed.local
            if local[:1] == '"':
                local = parsed.bare
            if domain in self._virtual_domains and self._virtusertable(display, local, domain,
                                                                        depth, path):
                return
            self._note(depth, f"{display}: no virtusertable entry for hosted domain {domain}")
            self._emit(error_route(display, *NO_SUCH_USER))
            return
        self._remote(display, parsed.local, domain, depth)

    def _srs_bounce(self, display: str, local: str, depth: int,
                    path: tuple[str, ...]) -> None:
        """A bounce to an SRS address: on to the original sender, or refused."""
        try:
            original = self.srs.reverse(local)
        except SrsError as e:
            self._note(depth, f"{display}: SRS address refused: {e.reason}")
            self._emit(error_route(display, *BAD_SRS, f"Invalid SRS address: {e.reason}"))
            return
        self._note(depth, f"{display}: SRS address (hash and timestamp valid) -> {original}")
        self._target(original, depth + 1, path)

    def _virtusertable(self, display: str, local: str, domain: str, depth: int,
                       path: tuple[str, ...]) -> bool:
        key_local = local.lower() if self.fold else local
        base, detail = self._split_detail(key_local)
        candidates = [f"{key_local}@{domain}"]
        if detail is not None:
            candidates += [f"{base}{self.detail_sep}*@{domain}", f"{base}@{domain}"]
        candidates.append(f"@{domain}")
        for key in candidates:
            hit = self._virtual.get(key)
            if hit is None:
                continue
            value, line = hit
            assert isinstance(value, str)
            bare_local = base if detail is not None else local
            target = (value.replace("%1", bare_local)
                      .replace("%2", detail or "")
                      .replace("%3", f"{self.detail_sep}{detail}" if detail else ""))
            if self._explain:
                self._note(depth, f"{display}: virtusertable "
                           f"{_where(self.maps.virtusertable, key, line)}: {key} -> {target}")
            if target.startswith("error:"):
                e = parse_error(target)
                self._emit(error_route(display, e.code, e.status, e.text))
                return True
            self._target(target, depth + 1, path)
            return True
        return False

    def _split_detail(self, local: str) -> tuple[str, str | None]:
        sep = self.detail_sep
        if sep and sep in local:
            base, _, detail = local.partition(sep)
            if base:
                return base, detail
        return local, None

    def _local_name(self, display: str, local: str, depth: int, path: tuple[str, ...],
                    domain: str, *, no_alias: bool = False) -> None:
        key = local.lower() if self.fold else local
        if key in path:
            # A name reached again through its own expansion (e.g. "neilb: neilb, x@y"):
            # sendmail delivers it locally rather than expanding it again.
            self._note(depth, f"{display}: self-reference, no further aliasing")
            no_alias = True
        if self._lookup_name(display, key, depth, path, domain, no_alias):
            return
        base, detail = self._split_detail(key)
        if detail is not None and self._lookup_name(display, base, depth, path, domain,
                                                    no_alias):
            return
        if no_alias and key in path:
            self._emit(error_route(display, 554, "5.4.6", "Aliasing/forwarding loop broken"))
            return
        self._note(depth, f"{display}: no alias, forward, list or local user")
        self._emit(error_route(display, *NO_SUCH_USER))

    def _lookup_name(self, display: str, key: str, depth: int, path: tuple[str, ...],
                     domain: str, no_alias: bool) -> bool:
        for source, table in self._sources:
            if table is not None:  # aliases or forwards
                if no_alias:
                    continue
                hit = table.get(key)
                if hit is None:
                    continue
                targets = hit[0]
                if self._explain:
                    group = self.maps.aliases if source == "aliases" else self.maps.forwards
                    self._note(depth, f"{display}: {source} {_where(group, key, hit[1])}: "
                               f"{key} -> {', '.join(targets)}")  # type: ignore[arg-type]
                inner = (*path, key)
                depth += 1
                for t in targets:  # type: ignore[attr-defined]
                    self._target(t, depth, inner)
                return True
            if source == "lists":
                list_address = self.lists.lookup(key, domain)
                if list_address is None:
                    continue
                if self._explain:
                    self._note(depth, f"{display}: list {list_address}")
                self._emit(Route("list", "", list_address, display))
                return True
            if source == "local":
                hit = self._local.get(key)
                if hit is None:
                    continue
                if self._explain:
                    self._note(depth, f"{display}: local user "
                               f"{_where(self.maps.local_users, key, hit[1])}: {key}")
                self._emit(Route("local", "", key, display))
                return True
        return False

    def _target(self, target: str, depth: int, path: tuple[str, ...]) -> None:
        """Expand one alias / virtusertable target."""
        plan = self._plans.get(target)
        if type(plan) is Route and depth <= self.max_depth and not self._explain:
            # an address outside our domains, seen before: its route (no duplicate if first)
            routes = self._res.routes
            if routes:
                self._emit(plan)
            else:
                routes.append(plan)
            return
        t = target
        bare = t[1:-1] if len(t) >= 2 and t[0] == '"' and t[-1] == '"' else t
        if plan is None:
            if bare.startswith("|"):
                user = f'"{bare}"'
                self._emit(Route("prog", "", user, user))
                return
            if bare.startswith("/"):
                self._emit(Route("file", "", bare, bare))
                return
            if bare.startswith(INCLUDE):
                name = bare[len(INCLUDE):].strip()
                inc = self.maps.includes.get(name)
                if inc is None:  # load() reads every include; this is a map set built by hand
                    self._emit(error_route(bare, 451, "4.3.0", f"include file {name} not loaded"))
                    return
                targets = inc.entries[""][0]
                self._note(depth, f"{bare}: {inc.file}: {len(targets)} targets")  # type: ignore
                for sub in targets:  # type: ignore[attr-defined]
                    self._target(sub, depth + 1, path)
                return
            if bare.startswith("\\"):
                name = bare[1:]
                self._local_name(name, name, depth, path, self.primary, no_alias=True)
                return
            plan = self._plan(bare)
            if len(self._plans) < 1_000_000:
                self._plans[target] = plan
        if isinstance(plan, AddressError):
            self._note(depth, f"{bare}: {plan}")
            route = address_refusal(bare, plan)
            self._emit(route)
            return
        if type(plan) is Route:  # explaining, or too deep: the long way, with its notes
            plan = addresses.parse(bare, default_domain=self.primary)
        assert isinstance(plan, addresses.Address)
        self._address(bare, plan, depth, path)

    def _plan(self, bare: str) -> Route | addresses.Address | AddressError:
        """What an address target is: refused, an address of ours (the maps go on), or an
        address outside our domains, whose route depends on nothing else."""
        try:
            parsed = addresses.parse(bare, default_domain=self.primary)
        except AddressError as e:
            return e
        domain = parsed.domain
        if (domain in self.local_domains or domain in self.hosted_domains
                or (domain[:1] == "[" and self._own_literal(domain))):
            return parsed
        return self._remote_route(bare, parsed.local, domain)

    def _remote(self, display: str, local: str, domain: str, depth: int) -> None:
        if self._explain:
            self._note(depth, self._remote_note(display, domain))
        self._emit(self._remote_route(display, local, domain))

    def _remote_route(self, display: str, local: str, domain: str) -> Route:
        """The route of an address in another domain: mailertable, smart host, or MX."""
        user = f"{local}@{domain}"
        hit = self._mailer_for(domain)
        if hit is not None:
            value = str(hit[0][0])
            mailer, _, host = value.partition(":")
            if mailer == "error":
                e: ErrorTarget = parse_error(value)
                return error_route(display, e.code, e.status, e.text)
            if mailer == "local":
                return Route("local", "", host or local, display)
            return Route("relay" if mailer == "relay" else "esmtp", host, user, display)
        if self.smart_host:
            return Route("relay", self.smart_host, user, display)
        return Route("esmtp", domain, user, display)

    def _remote_note(self, display: str, domain: str) -> str:
        hit = self._mailer_for(domain)
        if hit is not None:
            (value, line), key = hit
            where = _where(self.maps.mailertable, key, line)
            return f"{display}: mailertable {where}: {key} -> {value}"
        if self.smart_host:
            return f"{display}: smart host {self.smart_host}"
        return f"{display}: MX lookup for {domain} at delivery time"

    def _mailer_for(self, domain: str) -> tuple[tuple[object, object], str] | None:
        table = self._mailertable
        if not table:
            return None
        hit = table.get(domain)
        if hit is not None:
            return hit, domain
        if domain[:1] == "[":  # an address literal has no parent domains
            hit = table.get(".")
            return (hit, ".") if hit is not None else None
        labels = domain.split(".")
        for i in range(1, len(labels)):
            key = "." + ".".join(labels[i:])
            hit = table.get(key)
            if hit is not None:
                return hit, key
        hit = table.get(".")
        return (hit, ".") if hit is not None else None


def _merge(group: list[Map]) -> dict[str, tuple[object, int]]:
    """Merge maps, first file wins. The values are the readers' own (value, line): one file
    (the usual case) is its dictionary as it is, not a copy; ``_where`` finds the file
    again for --explain."""
    if len(group) == 1:
        return group[0].entries
    merged: dict[str, tuple[object, int]] = {}
    for m in reversed(group):
        merged.update(m.entries)
    return merged


def _where(group: list[Map], key: str, line: object) -> str:
    """"file:line" of a merged entry: the first file of the group that names the key."""
    for m in group:
        if key in m.entries:
            return f"{m.file}:{line}"
    return f"?:{line}"
