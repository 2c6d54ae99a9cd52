"""The items of ``postroom check`` that look outside the site home: DNS (do the service
names and the domains' MX point at this host?) and the submission certificate.

"This host" is an address this machine can bind: the same test the kernel makes, with
no list of interfaces to keep. DNS is asked of the resolver the profile names (``[dns]
nameservers``), as the mail path asks it.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import dns.exception
import dns.nameserver
import dns.resolver

from postroom.delivery.mx import describe_dns, parse_nameservers
from postroom.ops.check_items import FAIL, PASS, WARN, Item
from postroom.site import Site

Lookup = Callable[[str, str], list[str]]
DAY = 86400.0


def is_local(address: str) -> bool:
    """Can this machine bind ``address``? (Then mail sent there reaches it.)"""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((address, 0))
    except OSError:
        return False
    return True


def resolver_for(site: Site) -> tuple[Lookup, str]:
    """A lookup function (name, type) -> records as text, and who answers."""
    p = site.profile.dns
    if not p.nameservers and os.environ.get("POSTROOM_FORBID_SYSTEM_DNS"):
        raise ValueError("dns.nameservers is empty but POSTROOM_FORBID_SYSTEM_DNS is set")
    if p.nameservers:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [dns.nameserver.Do53Nameserver(a, port)
                         for a, port in parse_nameservers(p.nameservers)]
        who = ", ".join(p.nameservers)
    else:
        r = dns.resolver.Resolver()
        who = "the system's resolver"
    r.timeout = r.lifetime = p.timeout
    r.cache = None

    def lookup(name: str, rdtype: str) -> list[str]:
        try:
            answer = r.resolve(name, rdtype, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            return []
        return [rd.to_text() for rd in answer]

    return lookup, who


def _addresses(lookup: Lookup, name: str) -> list[str]:
    return lookup(name, "A") + lookup(name, "AAAA")


def dns_items(site: Site) -> list[Item]:
    p = site.profile
    names = list(dict.fromkeys(p.check.names or [p.site.hostname, *p.site.host_names]))
    domains = p.check.mx_domains or list(p.site.domains)
    try:
        lookup, who = resolver_for(site)
    except (OSError, ValueError, dns.exception.DNSException) as e:
        return [Item("dns", FAIL, f"no resolver: {e}", "set [dns] nameservers")]
    items = []
    for name in names:
        try:
            found = _addresses(lookup, name)
        except dns.exception.DNSException as e:
            items.append(Item(f"dns {name}", FAIL, describe_dns(e, timeout=p.dns.timeout),
                              f"check the DNS servers ({who})"))
            continue
        here = [a for a in found if is_local(a)]
        if not found:
            items.append(Item(f"dns {name}", FAIL, f"{name} has no A or AAAA record ({who})",
                              f"add an A record for {name} with this machine's address"))
        elif len(here) < len(found):
            items.append(Item(f"dns {name}", FAIL,
                              f"{name} -> {', '.join(found)}: "
                              f"{', '.join(a for a in found if a not in here)} is not this "
                              "machine", f"point {name} at this machine's address"))
        else:
            items.append(Item(f"dns {name}", PASS, f"{name} -> {', '.join(found)} (this host)"))
    for domain in domains:
        try:
            mx = sorted((int(r.split()[0]), r.split()[1].rstrip(".")) for r in
                        lookup(domain, "MX"))
            ours = [h for _, h in mx if any(is_local(a) for a in _addresses(lookup, h))]
        except dns.exception.DNSException as e:
            items.append(Item(f"mx {domain}", FAIL, describe_dns(e, timeout=p.dns.timeout),
                              f"check the DNS servers ({who})"))
            continue
        hosts = ", ".join(f"{pref} {h}" for pref, h in mx)
        if not mx:
            items.append(Item(f"mx {domain}", WARN, f"{domain} has no MX records",
                              f"add MX records for {domain} (this host, the relays)"))
        elif ours:
            items.append(Item(f"mx {domain}", PASS, f"MX {hosts}: {', '.join(ours)} is here"))
        else:
            items.append(Item(f"mx {domain}", WARN, f"MX {hosts}: none of them is this host; "
                              "mail reaches us only through them (the upstream relays?)",
                              f"if this host should take mail for {domain} directly, add "
                              "it to the MX records"))
    return items


def _matches(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def _decode(path: str) -> dict[str, Any]:
    # the standard library's own certificate decoder (what getpeercert() returns)
    decoded: dict[str, Any] = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    return decoded


def cert_item(site: Site, *, now: float | None = None) -> Item:
    p = site.profile
    name = p.check.submission_name or p.site.hostname
    path = site.path(p.tls.cert)
    if not any(lst.role in ("submission", "submissions") for lst in p.listeners):
        return Item("certificate", PASS, "no submission listener: no certificate needed")
    try:
        cert = _decode(str(path))
    except FileNotFoundError:
        return Item("certificate", FAIL, f"{path}: no such file",
                    f"install the certificate for {name} there (tls.cert)")
    except (OSError, ssl.SSLError) as e:
        return Item("certificate", FAIL, f"{path}: not a PEM certificate ({e})",
                    "tls.cert must name the PEM certificate (chain)")
    sans = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    subject = dict(x[0] for x in cert.get("subject", ()) if x)
    names = sans or [subject.get("commonName", "")]
    expires = ssl.cert_time_to_seconds(cert["notAfter"])
    left = (expires - (now or time.time())) / DAY
    when = time.strftime("%Y-%m-%d", time.gmtime(expires))
    if not any(_matches(n, name) for n in names):
        return Item("certificate", FAIL, f"{path} is for {', '.join(names)}, not {name}",
                    f"get a certificate for {name} (clients check the name)")
    if left < 0:
        return Item("certificate", FAIL, f"{path} expired on {when}",
                    "renew it, then postroom reload")
    if left < p.check.cert_days:
        return Item("certificate", WARN, f"{path} for {name} expires on {when}, in "
                    f"{left:.0f} days", "renew it, then postroom reload")
    return Item("certificate", PASS, f"{path} for {name}, valid until {when}")
