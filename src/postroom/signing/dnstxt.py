"""TXT lookups for dkimpy (its ``dnsfunc``: ``name -> bytes | None``) on the site's
``[dns] nameservers``, never the system resolver under the test suite (as ``delivery.mx``)."""

from __future__ import annotations

import dns.exception

from postroom.delivery.mx import txt_resolver
from postroom.site import Site


class TxtResolver:
    def __init__(self, nameservers: list[str], timeout: float) -> None:
        self._resolver = txt_resolver(nameservers, timeout)

    @classmethod
    def from_site(cls, site: Site) -> TxtResolver:
        return cls(list(site.profile.dns.nameservers), site.profile.dns.timeout)

    def records(self, name: str) -> list[bytes]:
        """Every TXT record at ``name``, its strings joined; [] for none or a failure."""
        try:
            answer = self._resolver.resolve(name, "TXT", search=False)
        except dns.exception.DNSException:
            return []
        return [b"".join(getattr(r, "strings", ())) for r in answer]

    def dkimpy(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """The ``dnsfunc`` dkimpy calls: the first TXT record at the name, or None."""
        text = name.decode() if isinstance(name, bytes) else name
        found = self.records(text.rstrip("."))
        return found[0] if found else None
