"""The message as it leaves for another domain, for one site:

    ours (submission, local, lists, notices)   DKIM-signed for the From domain (or the
                                               list's); a list post is ARC-sealed too,
                                               once for all its copies (lists.fanout)
    someone else's, forwarded                  our Authentication-Results, then sealed

``stamp`` writes our Authentication-Results before anything changes the message (the
runner does it when a message is handed to the list engine or forwarded); ``sign`` and
``seal`` are the last steps, after every header change. The keys, the DNS resolver and
the ids are read once per runtime snapshot (``for_site``).
"""

from __future__ import annotations

import weakref

from postroom.signing import arcseal, authresults, body_memo, crlf_parse, rsa_openssl
from postroom.signing.dkimsign import Signer
from postroom.signing.dnstxt import TxtResolver
from postroom.signing.keys import Key, KeyRing
from postroom.site import Site


class Outgoing:
    def __init__(self, site: Site) -> None:
        rsa_openssl.install()
        body_memo.install()
        crlf_parse.install()
        p = site.profile
        # no reference to the site: for_site's cache is keyed weakly by it
        self._nameservers, self._timeout = list(p.dns.nameservers), p.dns.timeout
        self.ring = KeyRing.load(site)
        self.signer = Signer(self.ring)
        self.dkim_on = p.dkim.enabled and bool(self.ring)
        self.authserv_id = p.arc.authserv_id or p.site.hostname
        self.trusted = list(p.arc.trusted_authserv_ids)
        self.seal_key: Key | None = (self.ring.arc_key(p.site.domains[0])
                                     if p.arc.enabled else None)
        self._dns: TxtResolver | None = None

    @property
    def dns(self) -> TxtResolver:
        if self._dns is None:
            self._dns = TxtResolver(self._nameservers, self._timeout)
        return self._dns

    # -- what the runner asks before handing work to a thread

    @property
    def sealing(self) -> bool:
        return self.seal_key is not None

    # -- the steps

    def stamp(self, message: bytes) -> bytes:
        """Our Authentication-Results on top (any old one under our id removed)."""
        clean = authresults.strip_ours(message, self.authserv_id)
        found = authresults.assess(clean, self.dns, self.trusted)
        return found.header(self.authserv_id) + clean

    def sign(self, message: bytes, fallback: str = "") -> bytes:
        return self.signer.sign(message, fallback) if self.dkim_on else message

    def seal(self, message: bytes) -> bytes:
        if self.seal_key is None:
            return message
        return arcseal.seal(message, self.seal_key, self.authserv_id)

    def forwarded(self, message: bytes) -> bytes:
        """Someone else's mail going on to another domain: assessed, then sealed."""
        return self.seal(self.stamp(message)) if self.sealing else message


_CACHE: weakref.WeakKeyDictionary[Site, Outgoing] = weakref.WeakKeyDictionary()


def for_site(site: Site) -> Outgoing:
    """The site's signer and sealer, made once per runtime snapshot (a reload reads the
    keys again)."""
    out = _CACHE.get(site)
    if out is None:
        out = _CACHE[site] = Outgoing(site)
    return out
