"""SRS for one site: when the envelope sender is rewritten, and what a bounce to an SRS
address means.

Rewritten (``return_path``): mail from an *outside* sender (not a local or hosted domain,
not in ``[srs] exclude_domains``) that reached us for a local or hosted address and goes
on to another domain (mailer ``esmtp`` or ``relay``): a forward, an alias, a virtusertable
entry or a catch-all. Not rewritten: the null sender, local senders (submission, lists,
notices: they are ours and DKIM-signed), mail relayed for an internal client straight to
an outside address (it is not forwarded), and deliveries to local mailboxes, programs and
files. The new sender is in the site's primary domain, so SPF passes at the destination
for any sender.

Reversed (``reverse``): an ``SRS0``/``SRS1`` local part in a local domain is a bounce of
mail we forwarded; the resolver routes it to the original sender when hash and timestamp
are valid, and refuses it (550 5.7.1, the reason named) otherwise.

The secrets are read once per runtime (``from_site``); ``postroom srs rotate`` and a reload
bring in new ones. Without a secrets file SRS is off (``serve`` and ``init`` make one).
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.site import Site
from postroom.srs import secrets
from postroom.srs.codec import Srs, SrsError, is_srs

FORWARDING_MAILERS = frozenset({"esmtp", "relay"})


@dataclass(frozen=True, slots=True)
class SrsPolicy:
    codec: Srs | None          # None: no secrets file (SRS off; SRS addresses not special)
    enabled: bool              # rewrite forwarded mail (reversing works whenever codec is set)
    alias: str                 # the domain SRS addresses are made in: the primary domain
    ours: frozenset[str]       # local and hosted domains: senders never rewritten
    exclude: tuple[str, ...]

    @classmethod
    def from_site(cls, site: Site) -> SrsPolicy:
        p = site.profile
        entries = secrets.read(site.path(p.srs.secret_file))
        codec = Srs(tuple(s for s, _ in entries), p.srs.max_age) if entries else None
        return cls(codec, p.srs.enabled and p.site.role == "hub", p.site.domains[0],
                   site.local_domains | site.hosted_domains, tuple(p.srs.exclude_domains))

    @property
    def active(self) -> bool:
        return self.enabled and self.codec is not None

    def outside(self, sender: str) -> bool:
        """Is ``sender`` someone else's address, one SRS would rewrite?"""
        domain = sender.rpartition("@")[2].lower()
        if not domain or domain in self.ours or domain[:1] == "[":
            return False
        return not any(domain == d or domain.endswith("." + d) for d in self.exclude)

    def return_path(self, sender: str, *, forwarded: bool, mailer: str,
                    now: float | None = None) -> str:
        """The envelope sender this delivery goes out with."""
        if (not self.active or not sender or not forwarded or mailer not in FORWARDING_MAILERS
                or not self.outside(sender) or not _plain_local(sender)):
            return sender
        assert self.codec is not None
        return self.codec.forward(sender, self.alias, now)

    def is_srs(self, local: str) -> bool:
        return self.codec is not None and is_srs(local)

    def reverse(self, local: str, now: float | None = None) -> str:
        """The original sender an SRS local part stands for; ``SrsError`` if refused."""
        if self.codec is None:
            raise SrsError("SRS is not set up here")
        return self.codec.reverse(local, now)


def _plain_local(address: str) -> bool:
    """A quoted local part cannot be carried inside another one: such senders keep theirs."""
    local = address.rpartition("@")[0]
    return bool(local) and '"' not in local and "@" not in local and " " not in local
