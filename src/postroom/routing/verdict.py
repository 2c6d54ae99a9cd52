"""The RCPT verdict for many addresses at once (the valid-address export), fast.

``Resolver.resolve`` builds every route of an address, with its whole expansion, which
the export does not need: it asks only whether mail for the address is taken. An address
is taken as soon as one route is deliverable (``Resolution.refusal``), and for the common
map entry that is plain: ``name: someone@elsewhere`` (a forward to another provider),
whose target goes out by SMTP unless the mailertable refuses that domain. ``takes``
answers those from the merged maps in a few dictionary lookups; everything else (local
targets, includes, pipes, files, virtusertable domains, SRS, errors) goes through
``resolve``, so the answer is always the one RCPT gives.
"""

from __future__ import annotations

import re

from postroom.routing.resolve import Resolver


def takes(resolver: Resolver, local: str, domain: str,
          outside: dict[str, bool] | None = None) -> bool:
    """Whether RCPT TO ``local@domain`` is taken (``local`` as a map key has it).
    ``outside``: a cache of target domains' answers, for one caller asking many times of
    one resolver."""
    quick = _quick(resolver, local, domain, {} if outside is None else outside)
    if quick is not None:
        return quick
    return resolver.resolve(f"{local}@{domain}").refusal is None


def _quick(r: Resolver, local: str, domain: str, outside: dict[str, bool]) -> bool | None:
    if (domain not in r.local_domains or domain in r._virtual_domains
            or r.null_client_hub or local[:1] == '"' or r.srs.is_srs(local)):
        return None
    key = local.lower() if r.fold else local
    for source in r.order:
        if source == "aliases" or source == "forwards":
            hit = (r._aliases if source == "aliases" else r._forwards).get(key)
            if hit is None:
                continue
            targets = hit[0]
            assert isinstance(targets, tuple | list)
            return True if any(_goes_out(r, t, outside) for t in targets) else None
        if source == "lists" and r.lists.lookup(key, domain) is not None:
            return True
        if source == "local" and key in r._local:
            return True
    return None


# For ASCII text, str.isalnum() is exactly [A-Za-z0-9]: one regex match instead of a
# generator step per character (the export asks this for every forward).
_ASCII_DOMAIN = re.compile(r"[A-Za-z0-9.-]+")
_ASCII_LOCAL = re.compile(r"[A-Za-z0-9._+=-]+")


def _plain(text: str, ascii_form: re.Pattern[str], others: str) -> bool:
    if text.isascii():
        return ascii_form.fullmatch(text) is not None
    return all(c.isalnum() or c in others for c in text)


def _goes_out(r: Resolver, target: str, outside: dict[str, bool]) -> bool:
    """A target that is a plain address outside our domains, not refused by the
    mailertable: a deliverable esmtp or relay route, whatever else the entry holds."""
    if target[:1] in ('"', "|", "/", "\\", ":") or target.count("@") != 1:
        return False
    local, _, domain = target.partition("@")
    if not local or not _plain(local, _ASCII_LOCAL, "-._+="):
        return False
    known = outside.get(domain)
    if known is None:
        known = outside[domain] = _domain_goes_out(r, domain.lower())
    return known


def _domain_goes_out(r: Resolver, domain: str) -> bool:
    if (not domain or domain[:1] == "[" or domain in r.local_domains
            or domain in r.hosted_domains or not _plain(domain, _ASCII_DOMAIN, "-.")):
        return False
    hit = r._mailer_for(domain)
    return hit is None or not str(hit[0][0]).startswith(("error:", "local:"))
