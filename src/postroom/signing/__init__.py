"""How mail leaving this host is vouched for: DKIM signatures for our own mail, ARC seals
for mail we forward or send on for a list.

    keys         SITE/keys/dkim/DOMAIN.SELECTOR.key: generate, load, the DNS record
    dnstxt       TXT lookups for dkimpy on the site's nameservers
    dkimsign     DKIM-Signature (relaxed/relaxed, rsa-sha256 or ed25519-sha256)
    authresults  our Authentication-Results for mail we did not make
    arcseal      the ARC set (AAR, AMS, AS)
    outgoing     the steps for one site, in order: stamp, sign, seal
"""

from postroom.signing.keys import Key, KeyRing
from postroom.signing.outgoing import Outgoing, for_site

__all__ = ["Key", "KeyRing", "Outgoing", "for_site"]
