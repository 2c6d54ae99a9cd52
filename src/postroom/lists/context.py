"""The vocabulary of the posting pipeline: the typed context every stage reads and writes,
the verdict a stage returns, and the seams (membership, DNS) the engine plugs in.

Mailman passes one untyped ``msgdata`` dict through its stages; here it is
:class:`PostContext`, a dataclass whose fields say what a stage may read and record. No
database and no network here: the store answers ``lookup_member`` and ``is_moderator``,
the site's resolver answers ``dns``, so the stages stay pure functions of the context.

    stage(ctx) -> Verdict | None       None: go on; a Verdict: the rule decided
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Protocol

from postroom.lists.model import ListSettings, Member, RuleAction

# Parse with the modern API; render with CRLF and leave every parsed header as it came
# (refold_source="none"), so an untouched header, or a signed part, goes out byte for byte.
PARSE_POLICY = policy.default
RENDER_POLICY = policy.SMTP.clone(refold_source="none")

MemberLookup = Callable[[str], Member | None]
ModeratorCheck = Callable[[str], bool]


class DnsLookupError(Exception):
    """A DNS answer could not be had (timeout, SERVFAIL): not the same as "no record"."""


class TxtLookup(Protocol):
    """The DNS seam of the pipeline (DMARC): the TXT strings published at ``name``.

    No record (NXDOMAIN, no TXT) is ``[]``; a failed lookup raises :class:`DnsLookupError`.
    """

    def txt(self, name: str) -> list[str]: ...


class NoDns:
    """A resolver for contexts that must not look anything up: every name has no TXT."""

    def txt(self, name: str) -> list[str]:
        return []


class Stage(Protocol):
    """One step of a pipeline: ``name`` is its key in config, docs and the rule-hits
    header; ``description`` says what it does, for people. It returns None to go on, or
    the Verdict that decides the post."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def __call__(self, ctx: PostContext, /) -> Verdict | None: ...


@dataclass(frozen=True, slots=True)
class Handler:
    """A stage that changes the post and never decides (Mailman's handlers)."""

    name: str
    description: str
    change: Callable[[PostContext], None]

    def __call__(self, ctx: PostContext, /) -> Verdict | None:
        self.change(ctx)
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a stage decided, and why (the reason a moderator or the log is shown)."""

    action: RuleAction
    reason: str

    @classmethod
    def accept(cls, reason: str) -> Verdict:
        return cls(RuleAction.ACCEPT, reason)

    @classmethod
    def hold(cls, reason: str) -> Verdict:
        return cls(RuleAction.HOLD, reason)

    @classmethod
    def reject(cls, reason: str) -> Verdict:
        return cls(RuleAction.REJECT, reason)

    @classmethod
    def discard(cls, reason: str) -> Verdict:
        return cls(RuleAction.DISCARD, reason)


@dataclass(slots=True)
class PostContext:
    """One post to one list on its way through ``pipeline.POSTING``.

    ``message`` is parsed once from ``raw`` and changed in place by the handler stages;
    ``raw`` stays the bytes as received (size checks, the held copy). ``outgoing`` is set
    by ``pipeline.run`` for an accepted post: the decorated bytes every member's copy is
    rendered from (``decorate.personalise``).
    """

    settings: ListSettings
    message: EmailMessage
    raw: bytes
    sender: str                         # envelope sender ("" for the null sender)
    recipient: str                      # the address the post came to
    lookup_member: MemberLookup
    is_moderator: ModeratorCheck
    now: datetime
    hostname: str                       # the site's host name
    dns: TxtLookup = field(default_factory=NoDns)
    secret: bytes = b""                 # the list's secret (tokens); b"" = no approval token
    web_base: str = ""                  # e.g. "https://lists.inf.example.ac.uk"; "" = no web
    archive_url: str = ""               # List-Archive; "" = none
    rule_hits: list[str] = field(default_factory=list)
    rule_misses: list[str] = field(default_factory=list)
    decision: RuleAction | None = None
    reason: str = ""
    decided_by: str = ""                # the name of the stage that decided
    outgoing: bytes | None = None

    @classmethod
    def from_bytes(cls, settings: ListSettings, raw: bytes, *, sender: str, recipient: str,
                   lookup_member: MemberLookup, is_moderator: ModeratorCheck,
                   now: datetime, hostname: str, dns: TxtLookup | None = None,
                   secret: bytes = b"", web_base: str = "",
                   archive_url: str = "") -> PostContext:
        message = BytesParser(_class=EmailMessage, policy=PARSE_POLICY).parsebytes(raw)
        return cls(settings, message, raw, sender, recipient, lookup_member, is_moderator,
                   now, hostname, dns if dns is not None else NoDns(), secret,
                   web_base.rstrip("/"), archive_url)

    # -- what several rules ask -------------------------------------------------------------

    def header_addresses(self, *names: str) -> list[str]:
        """The addresses (lower case) in the named headers, in order."""
        values: list[str] = []
        for name in names:
            values += [str(v) for v in self.message.get_all(name, [])]
        return [addr.lower() for _, addr in getaddresses(values) if addr]

    def senders(self) -> list[str]:
        """Who sent it, most telling first: From, Sender, the envelope sender (Mailman's
        ``msg.senders``), lower case, without repeats."""
        found = [*self.header_addresses("From", "Sender"), self.sender.lower()]
        return [a for i, a in enumerate(found) if a and a not in found[:i]]

    def member(self) -> Member | None:
        """The first sender who is a member of the list, if any."""
        for address in self.senders():
            member = self.lookup_member(address)
            if member is not None:
                return member
        return None

    def render(self) -> bytes:
        return self.message.as_bytes(policy=RENDER_POLICY)
