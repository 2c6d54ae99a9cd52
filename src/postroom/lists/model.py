"""The words of the list engine: a list's settings and a member, as plain typed values.

The store (``postroom.store``) keeps them; the posting pipeline, moderation, decoration
and fan-out read them. Every setting has a default a new list gets, a type, and a
documented meaning (docs/lists.md); ``postroom lists set`` validates against this model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class PostingPolicy(StrEnum):
    MEMBERS = "members"        # members post; others are held for the moderators
    MODERATED = "moderated"    # every post is held
    OPEN = "open"              # anyone posts (announce lists use moderated instead)


class ArchivePolicy(StrEnum):
    PUBLIC = "public"
    MEMBERS = "members"
    NONE = "none"


class ReplyTo(StrEnum):
    AUTHOR = "author"          # leave Reply-To alone (the default, as Mailman 3)
    LIST = "list"              # Reply-To: the list


class DmarcMitigation(StrEnum):
    MUNGE_FROM = "munge_from"  # From: "Author via List" <list>, Reply-To: author
    WRAP = "wrap"              # the post wrapped as message/rfc822 in a list message
    NONE = "none"


class DeliveryMode(StrEnum):
    REGULAR = "regular"
    MIME_DIGEST = "mime_digest"
    PLAIN_DIGEST = "plain_digest"  # RFC 1153


class RuleAction(StrEnum):
    ACCEPT = "accept"
    HOLD = "hold"
    REJECT = "reject"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class AddressRule:
    """A per-list sender rule: ``pattern`` is an address or ``^regex``."""

    pattern: str
    action: RuleAction


@dataclass(slots=True)
class ListSettings:
    """One list: ``name@domain``, and everything an owner can set."""

    name: str
    domain: str
    description: str = ""
    owners: list[str] = field(default_factory=list)
    moderators: list[str] = field(default_factory=list)
    posting_policy: PostingPolicy = PostingPolicy.MEMBERS
    subject_prefix: str = ""            # e.g. "[services-unit] "; "" = none
    footer: str = ""                    # plain text added to every post; "" = none
    max_message_size: int = 0           # bytes; 0 = the site's limit only
    max_recipients: int = 10            # explicit To/Cc recipients before a hold
    archive_policy: ArchivePolicy = ArchivePolicy.PUBLIC
    reply_to: ReplyTo = ReplyTo.AUTHOR
    dmarc_mitigation: DmarcMitigation = DmarcMitigation.MUNGE_FROM
    subscription_needs_approval: bool = False
    web_signup: bool = True
    obfuscate_addresses: bool = True
    digest_size_kb: int = 30            # send a digest when this much has gathered
    digest_period_days: int = 1         # or after this long
    held_expiry_days: int = 14          # a held post not decided by then is discarded
    address_rules: list[AddressRule] = field(default_factory=list)
    acceptable_aliases: list[str] = field(default_factory=list)  # implicit destination

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"

    def service(self, suffix: str) -> str:
        """``NAME-request@domain`` and the like (suffix ``request``)."""
        return f"{self.name}-{suffix}@{self.domain}"

    @property
    def list_id(self) -> str:
        """RFC 2919 List-Id (the part inside the angle brackets)."""
        return f"{self.name}.{self.domain}"


@dataclass(slots=True)
class Member:
    address: str                        # lower case
    display_name: str = ""
    delivery_enabled: bool = True       # off by the member, or by bounce processing
    mode: DeliveryMode = DeliveryMode.REGULAR
    moderated: bool = False             # this member's posts are held
    bounce_score: float = 0.0
