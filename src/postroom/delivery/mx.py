"""Where to connect for a route host: MX resolution (RFC 5321 section 5.1, RFC 7505).

Route hosts come in the forms the resolver writes (sendmail's mailertable forms)::

    staffmail.example.ac.uk      MX lookup for the domain
    [smtp.example.ac.uk]         no MX: the host's own addresses
    [192.0.2.7] / [IPv6:2001:db8::7]   that address
    [127.0.0.1]:2526             any of the above with a port (also host:port)

``MxResolver.targets`` answers a list of ``Target(host, addresses)`` in the order to try:

- MX records by preference, records of equal preference shuffled (load sharing);
- no MX records: the domain's own A/AAAA records (the implicit MX);
- null MX (``0 .``, RFC 7505): permanent ``556 5.1.10 Domain does not accept mail``;
- a domain that does not exist, or has neither MX nor address: permanent ``5.1.2``;
- a timeout, SERVFAIL or unreachable resolver: temporary ``4.4.3``, each named for what it
  is (``SERVFAIL from 192.0.2.53``, ``DNS timeout (no answer from 192.0.2.53 within 10s)``,
  ``cannot reach the DNS server 192.0.2.53: Network is unreachable``), never one for
  another: the text is what an operator reads in ``postroom queue`` and the mail log;
- an MX list that names this host: the records at or after our own preference are dropped
  (we are a backup MX), and if none is left the mail would loop: permanent ``5.4.6``.

Lookups use dnspython's async resolver with ``[dns] nameservers`` (``host``, ``host:port`` or
``[v6]:port``; each entry keeps its own port, default 53). When the list is empty, MX
lookups read ``/etc/resolv.conf`` and address lookups go through the system's resolver
library (``getaddrinfo``), so names in ``/etc/hosts`` work for smart hosts.
Failures are raised as ``TemporaryFailure`` / ``PermanentFailure``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
from collections.abc import Iterable
from typing import NamedTuple

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from postroom.errors import ConfigError, PermanentFailure, TemporaryFailure
from postroom.site import Site


class Destination(NamedTuple):
    """A parsed route host: ``name`` without brackets, ``port`` or None, MX lookup or not."""

    name: str
    port: int | None
    mx: bool

    @property
    def literal(self) -> bool:
        return ip_literal(self.name) is not None


class Target(NamedTuple):
    """One host to try and its addresses, in the order to try them."""

    host: str
    addresses: list[str]


def parse_destination(spec: str) -> Destination:
    """``[host]:port`` / ``host`` / ``host:port`` -> Destination; ValueError if malformed."""
    s = spec.strip()
    port: int | None = None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"{spec!r}: missing ']'")
        inner, rest = s[1:end], s[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{spec!r}: expected ':port' after ']'")
            port = _port(spec, rest[1:])
        if inner[:5].lower() == "ipv6:":
            inner = inner[5:]
        mx = False
    else:
        inner = s
        if inner.count(":") == 1:
            inner, _, p = inner.partition(":")
            port = _port(spec, p)
        mx = ip_literal(inner) is None
    inner = inner.rstrip(".").lower() if ip_literal(inner) is None else inner
    if not inner:
        raise ValueError(f"{spec!r}: no host")
    return Destination(inner, port, mx)


def _port(spec: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{spec!r}: {text!r} is not a port")
    return int(text)


def ip_literal(text: str) -> str | None:
    """The address ``text`` spells (normalised), or None when it is a name."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def txt_resolver(nameservers: Iterable[str], timeout: float) -> dns.resolver.Resolver:
    """A synchronous dnspython resolver for TXT lookups (DMARC, DKIM keys, MTA-STS) on the
    site's ``[dns] nameservers`` (empty: the system's), with the same refusal as
    ``MxResolver`` to ask the machine's resolver under the test suite."""
    entries = list(nameservers)
    if not entries and os.environ.get("POSTROOM_FORBID_SYSTEM_DNS"):
        raise ConfigError("postroom.toml", "dns.nameservers is empty but "
                          "POSTROOM_FORBID_SYSTEM_DNS is set", field="dns.nameservers",
                          hint="point nameservers at the test DNS server")
    if entries:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port)
                                for address, port in parse_nameservers(entries)]
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = timeout
    return resolver


def parse_nameservers(entries: Iterable[str]) -> list[tuple[str, int]]:
    """``["192.0.2.53", "127.0.0.1:5353", "[::1]:53"]`` -> ``[(address, port), ...]``."""
    out: list[tuple[str, int]] = []
    for entry in entries:
        text = entry.strip()
        port = 53
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif text.count(":") == 1:
            host, _, ptext = text.partition(":")
            port = int(ptext)
        else:
            host = text
        address = ip_literal(host)
        if address is None:  # a name: look it up once, here
            address = str(socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4][0])
        out.append((address, port))
    return out


def _temporary(text: str) -> TemporaryFailure:
    return TemporaryFailure(451, "4.4.3", text)


def _no_domain(text: str) -> PermanentFailure:
    return PermanentFailure(550, "5.1.2", text)


class MxResolver:
    """MX and address lookups for one site; see the module docstring for the rules."""

    def __init__(self, nameservers: Iterable[str] = (), *, timeout: float = 10.0,
                 our_names: Iterable[str] = ()) -> None:
        entries = list(nameservers)
        if not entries and os.environ.get("POSTROOM_FORBID_SYSTEM_DNS"):
            # set by the test suite: a test site that forgot [dns] nameservers must fail
            # loudly instead of asking the machine's resolver, off the loopback
            raise ConfigError("postroom.toml", "dns.nameservers is empty but "
                              "POSTROOM_FORBID_SYSTEM_DNS is set", field="dns.nameservers",
                              hint="point nameservers at the test DNS server")
        self.timeout = timeout
        self.our_names = frozenset(n.lower().rstrip(".") for n in our_names)
        self._system = not entries
        self._resolver: dns.asyncresolver.Resolver | None = None
        if entries:
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = [dns.nameserver.Do53Nameserver(address, port)
                             for address, port in parse_nameservers(entries)]
            self._configure(r)

    @classmethod
    def from_site(cls, site: Site) -> MxResolver:
        p = site.profile
        return cls(p.dns.nameservers, timeout=p.dns.timeout,
                   our_names=[p.site.hostname, *p.site.host_names])

    def _configure(self, r: dns.asyncresolver.Resolver) -> None:
        r.timeout = self.timeout
        r.lifetime = self.timeout
        r.cache = None
        self._resolver = r

    def _dns(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:  # the system's resolv.conf, read on first use
            try:
                self._configure(dns.asyncresolver.Resolver())
            except dns.exception.DNSException as e:
                raise _temporary(f"no DNS resolver configuration: {e}") from None
        assert self._resolver is not None
        return self._resolver

    # -- public ---------------------------------------------------------------------------

    async def txt(self, name: str) -> list[str]:
        """The TXT records at ``name``, each one's strings joined; [] for none and for a
        failed lookup (MTA-STS takes both as no policy)."""
        try:
            answer = await self._dns().resolve(name, "TXT", search=False)
        except (dns.exception.DNSException, TemporaryFailure):
            return []
        return [b"".join(getattr(r, "strings", ())).decode("utf-8", "replace")
                for r in answer]

    async def targets(self, spec: str | Destination) -> list[Target]:
        dest = spec if isinstance(spec, Destination) else self._parse(spec)
        if dest.literal:
            return [Target(dest.name, [dest.name])]
        if not dest.mx:
            addresses = await self._addresses(dest.name, missing="Host {name} not found")
            return [Target(dest.name, addresses)]
        return await self._mx(dest.name)

    @staticmethod
    def _parse(spec: str) -> Destination:
        try:
            return parse_destination(spec)
        except ValueError as e:
            # the route came from our own maps: a configuration problem, so keep the mail
            raise TemporaryFailure(451, "4.3.5", f"bad destination host in route: {e}") from None

    # -- MX ---------------------------------------------------------------------------------

    async def _mx(self, domain: str) -> list[Target]:
        try:
            answer = await self._dns().resolve(domain, "MX", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            raise _no_domain(f"Domain {domain} does not exist (NXDOMAIN)") from None
        except dns.exception.DNSException as e:
            raise _temporary(f"MX lookup for {domain} failed: {self._dns_text(e)}") from None
        records = [(int(r.preference), r.exchange.to_text(omit_final_dot=True).lower())
                   for r in (answer.rrset or [])]
        if not records:  # the implicit MX (RFC 5321 section 5.1)
            addresses = await self._addresses(
                domain, missing="Domain {name} has no MX or address records")
            return [Target(domain, addresses)]
        if any(host in ("", ".") for _, host in records):
            raise PermanentFailure(556, "5.1.10",
                                   f"Domain {domain} does not accept mail (null MX)")
        records = self._without_us(domain, records)
        ordered = _order(records)
        found = await asyncio.gather(*(self._mx_addresses(h) for h in ordered))
        targets = [Target(h, a) for h, a in zip(ordered, found, strict=True)
                   if isinstance(a, list) and a]
        if targets:
            return targets
        errors = [a for a in found if isinstance(a, TemporaryFailure)]
        if errors:
            raise _temporary(f"address lookup for the MX hosts of {domain} failed: "
                             f"{errors[-1].text}")
        raise PermanentFailure(550, "5.4.4",
                               f"MX hosts of {domain} ({', '.join(ordered)}) have no address")

    def _without_us(self, domain: str, records: list[tuple[int, str]]) -> list[tuple[int, str]]:
        ours = [pref for pref, host in records if host in self.our_names]
        if not ours:
            return records
        kept = [(pref, host) for pref, host in records if pref < min(ours)]
        if not kept:
            raise PermanentFailure(554, "5.4.6",
                                   f"MX list for {domain} points back to this host")
        return kept

    async def _mx_addresses(self, host: str) -> list[str] | TemporaryFailure:
        """Addresses of one MX host: [] when it has none (skipped), or the lookup failure."""
        try:
            return await self._addresses(host, missing="Host {name} not found")
        except PermanentFailure:
            return []
        except TemporaryFailure as e:
            return e

    # -- addresses ------------------------------------------------------------------------

    async def _addresses(self, name: str, *, missing: str) -> list[str]:
        if self._system:
            addresses = await self._getaddrinfo(name)
        else:
            addresses = await self._dns_addresses(name)
        if not addresses:
            raise _no_domain(missing.format(name=name))
        return addresses

    async def _dns_addresses(self, name: str) -> list[str]:
        r = self._dns()
        out: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await r.resolve(name, rdtype, raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                raise _no_domain(f"Host {name} not found (NXDOMAIN)") from None
            except dns.exception.DNSException as e:
                raise _temporary(f"{rdtype} lookup for {name} failed: "
                                 f"{self._dns_text(e)}") from None
            out += [r.to_text() for r in (answer.rrset or [])]
        return out

    def _dns_text(self, e: dns.exception.DNSException) -> str:
        """What went wrong with a lookup, in the words of what happened (see describe_dns)."""
        servers = [_server_name(str(ns)) for ns in
                   (self._resolver.nameservers if self._resolver is not None else [])]
        return describe_dns(e, timeout=self.timeout, servers=servers)

    async def _getaddrinfo(self, name: str) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), self.timeout)
        except TimeoutError:
            raise _temporary(f"address lookup for {name} failed: DNS timeout (no answer from "
                             f"the system resolver within {self.timeout:g}s)") from None
        except socket.gaierror as e:
            if e.errno in _NO_SUCH_NAME:
                return []
            raise _temporary(f"address lookup for {name} failed: {e.strerror}") from None
        out: list[str] = []
        for info in infos:
            address = str(info[4][0])
            if address not in out:
                out.append(address)
        return out


_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def _order(records: list[tuple[int, str]]) -> list[str]:
    """Hosts by preference; equal preferences in random order (RFC 5321 section 5.1)."""
    by_pref: dict[int, list[str]] = {}
    for pref, host in records:
        hosts = by_pref.setdefault(pref, [])
        if host not in hosts:
            hosts.append(host)
    out: list[str] = []
    for pref in sorted(by_pref):
        group = by_pref[pref]
        random.shuffle(group)
        out += [h for h in group if h not in out]
    return out


def describe_dns(e: dns.exception.DNSException, *, timeout: float,
                 servers: Iterable[str] = ()) -> str:
    """dnspython's failure as what happened, server by server.

    - no answer in time: ``DNS timeout (no answer from 127.0.0.1:5353 within 2s)``;
    - the servers answered with an error: ``SERVFAIL from 127.0.0.1:5353`` (or REFUSED...);
    - a query could not be sent or its answer read (the kernel said no: network
      unreachable, connection refused over TCP): ``cannot reach the DNS server
      127.0.0.1:5353: Connection refused``;
    - several servers failing differently: each of the above, joined with ``; ``.

    ``servers`` (the resolver's own list) names the servers when the error does not.
    Over UDP an address where nothing listens stays silent for a remote server (and the
    resolver's UDP sockets are not connected, so even locally no ICMP error comes back):
    that is a timeout, and is called one."""
    kwargs = e.kwargs if isinstance(e.kwargs, dict) else {}
    errors: list[tuple[object, ...]] = kwargs.get("errors") or []
    if isinstance(e, dns.exception.Timeout):
        silent = [_server_name(str(err[0])) for err in errors
                  if isinstance(err[3], dns.exception.Timeout)] or list(servers)
        others = [_one_error(err) for err in errors
                  if not isinstance(err[3], dns.exception.Timeout)]
        text = f"DNS timeout (no answer from {_names(silent)} within {timeout:g}s)"
        return "; ".join(dict.fromkeys([*others, text]))
    if isinstance(e, dns.resolver.NoNameservers):
        if not errors:
            return "no DNS server left to ask"
        return "; ".join(dict.fromkeys(_one_error(err) for err in errors))
    if isinstance(e, dns.resolver.NoResolverConfiguration):
        return f"no DNS resolver configuration: {e}"
    return str(e) or type(e).__name__


def _one_error(err: tuple[object, ...]) -> str:
    """One server's failure from dnspython's ``errors`` list
    (server, tcp, port, exception or rcode text, response)."""
    server, tcp, problem = _server_name(str(err[0])), bool(err[1]), err[3]
    over = " over TCP" if tcp else ""
    if isinstance(problem, str):  # an rcode: "SERVFAIL", "REFUSED", ...
        return f"{problem} from {server}{over}"
    if isinstance(problem, dns.exception.Timeout):
        return f"no answer from {server}{over}"
    if isinstance(problem, OSError):
        reason = problem.strerror or type(problem).__name__
        return f"cannot reach the DNS server {server}{over}: {reason}"
    if isinstance(problem, EOFError):
        return f"{server} closed the connection{over}"
    return f"bad answer from {server}{over}: {problem or type(problem).__name__}"


def _server_name(text: str) -> str:
    """dnspython's ``Do53:192.0.2.53@53`` -> ``192.0.2.53``; other ports kept
    (``127.0.0.1:5353``, ``[::1]:5353``)."""
    text = text.removeprefix("Do53:")
    address, at, port = text.rpartition("@")
    if not at or not port.isdigit():
        return text
    if port == "53":
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _names(servers: list[str]) -> str:
    unique = list(dict.fromkeys(servers))
    return ", ".join(unique) if unique else "the DNS servers"
