"""Our ``Authentication-Results`` (RFC 8601) for mail we did not make: what the hub found
about the message as it was handed to us, recorded once, before anything changes it, so
that an ARC seal can carry it to the final mailbox provider.

    trusted upstream relays   their results are taken as they stand (``[arc]
                              trusted_authserv_ids``): they saw the sender's SMTP session
                              (SPF) and we did not
    dkim                      every DKIM-Signature verified (dkimpy, our DNS)
    dmarc                     the From domain's policy and an aligned passing DKIM
                              signature (relaxed alignment); SPF alignment only when a
                              trusted upstream said spf=pass for an aligned smtp.mailfrom
    arc                       the chain that came with the message (dkimpy), so our seal
                              says cv=pass / fail / none truthfully

A header with our authserv-id that came with the message is removed first: only we write
under our name (RFC 8601 section 5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import authres
import dkim

from postroom.signing.dkimsign import DKIMPY_LOG, from_domain
from postroom.signing.dnstxt import TxtResolver

HEADER = b"Authentication-Results"
_AR = re.compile(rb"(?im)^authentication-results:[ \t]*(.*(?:\r\n[ \t].*)*)\r\n")


def _authserv_id(value: bytes) -> str:
    return value.split(b";", 1)[0].strip().split()[0].decode("ascii", "replace").lower() \
        if value.strip() else ""


def headers_of(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    return message[:end + 2] if end >= 0 else message


def strip_ours(message: bytes, authserv_id: str) -> bytes:
    """``message`` without the Authentication-Results headers that claim our id."""
    head = headers_of(message)
    ours = authserv_id.lower()
    out = _AR.sub(lambda m: b"" if _authserv_id(m.group(1)) == ours else m.group(0), head)
    return out + message[len(head):] if out != head else message


@dataclass(slots=True)
class Assessment:
    results: list[str] = field(default_factory=list)

    def header(self, authserv_id: str) -> bytes:
        body = ";\r\n\t".join([authserv_id, *(self.results or ["none"])])
        return HEADER + b": " + body.encode() + b"\r\n"


def _org(domain: str) -> str:
    """The organisational domain, roughly: the last two labels, three under a
    two-letter country code's second level (example.ac.uk)."""
    labels = domain.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _aligned(a: str, b: str) -> bool:
    return bool(a) and bool(b) and _org(a.lower()) == _org(b.lower())


def trusted_results(message: bytes, trusted: list[str]) -> list[authres.AuthenticationResult]:
    found = []
    for m in _AR.finditer(headers_of(message)):
        value = m.group(1)
        if _authserv_id(value) not in trusted:
            continue
        try:
            parsed = authres.AuthenticationResultsHeader.parse(
                "Authentication-Results: " + value.decode("utf-8", "replace"))
        except authres.core.SyntaxError:
            continue
        found += list(parsed.results)
    return found


def dmarc_policy(dns: TxtResolver, domain: str) -> str | None:
    """The p= of the From domain's DMARC record (or its organisation's), None for none."""
    for name in dict.fromkeys((domain, _org(domain))):
        for record in dns.records(f"_dmarc.{name}"):
            text = record.decode("utf-8", "replace")
            if not text.replace(" ", "").lower().startswith("v=dmarc1"):
                continue
            tags = dict(t.strip().partition("=")[::2] for t in text.split(";") if "=" in t)
            return tags.get("p", "none").strip().lower()
    return None


def assess(message: bytes, dns: TxtResolver, trusted: list[str]) -> Assessment:
    """What we can say about ``message`` (without our own old headers)."""
    out = Assessment()
    upstream = trusted_results(message, trusted)
    methods = {r.method for r in upstream}
    out.results += [str(r) for r in upstream if r.method not in ("arc",)]
    passing: list[str] = []
    if "dkim" in methods:
        passing = [str(getattr(r, "header_d", "") or "") for r in upstream
                   if r.method == "dkim" and r.result == "pass"]
    else:
        d = dkim.DKIM(message, logger=DKIMPY_LOG)
        count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
        for i in range(count):
            try:
                ok = d.verify(idx=i, dnsfunc=dns.dkimpy)
            except dkim.DKIMException:
                ok = False
            sig = d.signature_fields or {}
            sd = sig.get(b"d", b"").decode("ascii", "replace")
            ss = sig.get(b"s", b"").decode("ascii", "replace")
            out.results.append(f"dkim={'pass' if ok else 'fail'} header.d={sd} header.s={ss}")
            if ok:
                passing.append(sd)
        if not count:
            out.results.append("dkim=none")
    author = from_domain(message)
    if "dmarc" not in methods and author:
        policy = dmarc_policy(dns, author)
        spf_ok = [str(getattr(r, "smtp_mailfrom", "") or "").rpartition("@")[2]
                  for r in upstream if r.method == "spf" and r.result == "pass"]
        aligned = any(_aligned(author, d) for d in passing + spf_ok)
        verdict = "none" if policy is None else "pass" if aligned else "fail"
        out.results.append(f"dmarc={verdict} header.from={author}")
    if b"\r\narc-seal:" in b"\r\n" + headers_of(message).lower():
        try:
            cv, _, _ = dkim.arc_verify(message, dnsfunc=dns.dkimpy, logger=DKIMPY_LOG)
            out.results.append(f"arc={cv.decode() if isinstance(cv, bytes) else cv}")
        except dkim.DKIMException:
            out.results.append("arc=fail")
    return out
