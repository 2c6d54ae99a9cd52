"""DMARC mitigation: a post whose author's domain publishes ``p=reject`` or
``p=quarantine`` would fail DMARC at the members' providers once the list has changed it
(subject prefix, footer) and sends it from its own servers. So, as Mailman 3 does, per the
list's ``dmarc_mitigation``:

    munge_from  From: "Author Name via LIST" <LIST@domain>, and Reply-To: the author
                (Cc: the author instead when the list's reply_to is "list")
    wrap        the post, untouched, as a message/rfc822 part of a message From the list
    none        nothing

The policy (RFC 7489 6.6.3): the TXT records at ``_dmarc.<author domain>``; when none starts
``v=DMARC1``, those at ``_dmarc.<organisational domain>``, where ``sp=`` (else ``p=``)
applies. More than one DMARC record at a name counts as none.

**Limitation: the organisational domain is a simple rule, not the Public Suffix List**: the
last two labels, or three when the last two are a known two-label public suffix
(``ac.uk``, ``co.uk``, ``com.au`` ... :data:`TWO_LABEL_SUFFIXES`). A domain under a suffix
not in that set (``city.kawasaki.jp``) gets the wrong organisational domain, so a policy
published only there is missed; a policy at the author's own domain is always found.

A failed lookup (timeout, SERVFAIL) mitigates anyway: munging a post that did not need it
costs little, delivering one that did costs its delivery to every strict provider.

DNS goes through the :class:`~postroom.lists.context.TxtLookup` seam; :class:`DnsTxt` is
the dnspython implementation on the site's ``[dns] nameservers``. It is blocking: the
engine runs the pipeline off the event loop (``asyncio.to_thread(pipeline.run, ctx)``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses

import dns.exception
import dns.nameserver
import dns.resolver

from postroom.delivery.mx import txt_resolver
from postroom.lists.context import DnsLookupError, Handler, PostContext, TxtLookup
from postroom.lists.model import DmarcMitigation, ReplyTo
from postroom.site import Site

TWO_LABEL_SUFFIXES = frozenset({
    "ac.uk", "co.uk", "gov.uk", "org.uk", "ltd.uk", "plc.uk", "me.uk", "net.uk", "nhs.uk",
    "sch.uk", "police.uk", "ac.jp", "co.jp", "go.jp", "or.jp", "ne.jp", "com.au", "net.au",
    "org.au", "edu.au", "gov.au", "co.nz", "ac.nz", "org.nz", "govt.nz", "co.za", "ac.za",
    "org.za", "com.br", "net.br", "org.br", "gov.br", "com.cn", "edu.cn", "com.mx",
    "co.in", "ac.in", "co.kr", "ac.kr", "com.sg", "edu.sg", "com.tw", "edu.tw", "co.il",
    "ac.il", "com.tr", "edu.tr", "ac.at", "co.at", "or.at",
})

log = logging.getLogger("postroom.lists")

STRICT = frozenset({"reject", "quarantine"})


def organisational_domain(domain: str) -> str:
    """The registrable domain by the simple rule above (no Public Suffix List)."""
    labels = domain.lower().rstrip(".").split(".")
    keep = 3 if ".".join(labels[-2:]) in TWO_LABEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


def parse_record(text: str) -> dict[str, str]:
    """``"v=DMARC1; p=reject; sp=none"`` -> ``{"v": "DMARC1", "p": "reject", "sp": "none"}``
    (tag names lower case, values as written); ``{}`` when it is no DMARC record."""
    tags: dict[str, str] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if eq:
            tags.setdefault(name.strip().lower(), value.strip())
        elif item.strip():
            return {}
    first = next(iter(tags), "")
    return tags if first == "v" and tags["v"] == "DMARC1" else {}


def _record_at(dns_: TxtLookup, domain: str) -> dict[str, str] | None:
    records = [r for r in (parse_record(t) for t in dns_.txt(f"_dmarc.{domain}")) if r]
    return records[0] if len(records) == 1 else None


def policy(dns_: TxtLookup, domain: str) -> str | None:
    """The DMARC policy that applies to mail From ``domain`` (``"reject"``,
    ``"quarantine"``, ``"none"``), or None when no record applies. Raises
    :class:`DnsLookupError` when DNS fails."""
    domain = domain.lower().rstrip(".")
    record = _record_at(dns_, domain)
    if record is not None:
        return record.get("p", "").lower() or None
    org = organisational_domain(domain)
    if org == domain:
        return None
    record = _record_at(dns_, org)
    if record is None:
        return None
    return (record.get("sp") or record.get("p", "")).lower() or None


def needs_mitigation(dns_: TxtLookup, domain: str) -> tuple[bool, str]:
    """(mitigate?, why) for an author at ``domain``."""
    try:
        found = policy(dns_, domain)
    except DnsLookupError as e:
        return True, f"DMARC lookup for {domain} failed ({e}): mitigated to be safe"
    if found in STRICT:
        return True, f"{domain} publishes DMARC p={found}"
    return False, f"{domain}: DMARC {found or 'none published'}"


# -- the two mitigations ------------------------------------------------------------------------

def _author(message: EmailMessage) -> tuple[str, str] | None:
    found = getaddresses([str(v) for v in message.get_all("From", [])])
    for name, addr in found:
        if "@" in addr:
            return name, addr
    return None


def _via(name: str, addr: str, list_name: str) -> str:
    return f"{name or addr} via {list_name}"


def munge_from(message: EmailMessage, list_name: str, list_address: str,
               author: tuple[str, str], reply_to: ReplyTo) -> None:
    name, addr = author
    local, _, domain = list_address.rpartition("@")
    message.replace_header("From", Address(_via(name, addr, list_name), local, domain))
    original = Address(name, addr_spec=addr) if name else Address(addr_spec=addr)
    if reply_to is ReplyTo.LIST:
        existing = [str(v) for v in message.get_all("Cc", [])]
        del message["Cc"]
        message["Cc"] = ", ".join([*existing, str(original)])
    else:
        existing = [str(v) for v in message.get_all("Reply-To", [])]
        del message["Reply-To"]
        message["Reply-To"] = ", ".join(existing) if existing else str(original)


# the headers the wrapper copies from the post, so it threads and reads like the post
_WRAP_COPY = ("To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References")


def wrap(message: EmailMessage, list_name: str, list_address: str,
         author: tuple[str, str]) -> EmailMessage:
    """A new message From the list whose only content is ``message`` (message/rfc822)."""
    name, addr = author
    outer = EmailMessage(policy=message.policy)
    local, _, domain = list_address.rpartition("@")
    outer["From"] = Address(_via(name, addr, list_name), local, domain)
    outer["Reply-To"] = Address(name, addr_spec=addr) if name else Address(addr_spec=addr)
    for header in _WRAP_COPY:
        for value in message.get_all(header, []):
            outer[header] = value
    outer["MIME-Version"] = "1.0"
    outer.set_content(message, disposition="inline")
    return outer


def _mitigate(ctx: PostContext) -> None:
    mode = ctx.settings.dmarc_mitigation
    if mode is DmarcMitigation.NONE:
        return
    author = _author(ctx.message)
    if author is None:
        return
    domain = author[1].rpartition("@")[2].lower()
    if domain == ctx.settings.domain.lower():
        return
    mitigate, why = needs_mitigation(ctx.dns, domain)
    log.info("list=%s dmarc=%s %s", ctx.settings.address,
             mode.value if mitigate else "none", why)
    if not mitigate:
        return
    s = ctx.settings
    if mode is DmarcMitigation.MUNGE_FROM:
        munge_from(ctx.message, s.name, s.address, author, s.reply_to)
    else:
        ctx.message = wrap(ctx.message, s.name, s.address, author)


MITIGATE = Handler("dmarc_mitigation", "From an author whose domain publishes DMARC "
                   "reject or quarantine: From the list (munge_from) or wrapped (wrap).",
                   _mitigate)


# -- the dnspython implementation of the seam -------------------------------------------------

class DnsTxt:
    """TXT lookups with dnspython on the given nameservers (``host``, ``host:port``;
    empty: the system's), answering the :class:`TxtLookup` contract."""

    def __init__(self, nameservers: Iterable[str] = (), *, timeout: float = 5.0) -> None:
        self._resolver = txt_resolver(nameservers, timeout)

    @classmethod
    def from_site(cls, site: Site) -> DnsTxt:
        return cls(site.profile.dns.nameservers, timeout=site.profile.dns.timeout)

    def txt(self, name: str) -> list[str]:
        try:
            answer = self._resolver.resolve(name, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as e:
            raise DnsLookupError(f"{name}: {e.__class__.__name__}") from None
        out: list[str] = []
        for rdata in answer:
            strings: Iterable[bytes] = getattr(rdata, "strings", ())
            out.append(b"".join(strings).decode("utf-8", "replace"))
        return out
