"""The posting rules, one small object each, and the moderation table that orders them.

A rule only *looks*: ``check(ctx)`` returns why it hit (a reason) or None. What a hit does
is not the rule's business but the table's, as in Mailman's ``chains/builtin.py``::

    MODERATION = ((LOOP, DISCARD), (APPROVED, ACCEPT), ...)

Each row becomes one pipeline stage (:class:`RuleStage`) named after the rule. The first
rule that hits decides: HOLD, REJECT or DISCARD stop the pipeline; ACCEPT ends the rules
(the rows after it are skipped) and the post goes on to decoration. Every rule asked is
recorded in ``ctx.rule_hits`` or ``ctx.rule_misses``. Rule names are the list settings
they read where there is one (``max_message_size``), so docs, config and the
``X-Postroom-Rule-Hits`` header use one word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from postroom.lists.context import PostContext, Verdict
from postroom.lists.model import PostingPolicy, RuleAction
from postroom.lists.tokens import check_approval_token

ACCEPT, HOLD, REJECT, DISCARD = (RuleAction.ACCEPT, RuleAction.HOLD, RuleAction.REJECT,
                                 RuleAction.DISCARD)


class Rule(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def check(self, ctx: PostContext, /) -> str | None: ...


def matches(pattern: str, address: str) -> bool:
    """An ``AddressRule`` pattern: an address (any case) or, starting with ``^``, a regular
    expression searched case-insensitively. A broken regex matches nothing."""
    if pattern.startswith("^"):
        try:
            return re.search(pattern, address, re.IGNORECASE) is not None
        except re.error:
            return False
    return pattern.lower() == address.lower()


# -- the rules ---------------------------------------------------------------------------------

class Loop:
    name = "loop"
    description = "The post already went through this list (its List-Id or X-BeenThere)."

    def check(self, ctx: PostContext) -> str | None:
        s = ctx.settings
        for value in ctx.message.get_all("X-BeenThere", []):
            if str(value).strip().strip("<>").lower() == s.address.lower():
                return f"X-BeenThere: {s.address}: the post has been through this list"
        for value in ctx.message.get_all("List-Id", []):
            text = str(value)
            inner = text[text.rfind("<") + 1:text.rfind(">")] if "<" in text else text
            if inner.strip().lower() == s.list_id.lower():
                return f"List-Id: <{s.list_id}>: the post has been through this list"
        return None


class Approved:
    name = "approved"
    description = ("An Approved: (or Approve:) header holding the list's approval token "
                   "passes the post by the remaining rules.")

    headers = ("Approved", "Approve", "X-Approved", "X-Approve")

    def check(self, ctx: PostContext) -> str | None:
        if not ctx.secret:
            return None
        for header in self.headers:
            for value in ctx.message.get_all(header, []):
                if check_approval_token(ctx.secret, ctx.settings.list_id, str(value)):
                    return f"{header}: header with the list's approval token"
        return None


@dataclass(frozen=True, slots=True)
class AddressRules:
    """The list's ``address_rules`` with one action: a sender matching one of them hits."""

    action: RuleAction

    @property
    def name(self) -> str:
        return f"address_rules.{self.action.value}"

    @property
    def description(self) -> str:
        return f"A sender matches one of the list's {self.action.value} patterns."

    def check(self, ctx: PostContext) -> str | None:
        patterns = [r.pattern for r in ctx.settings.address_rules if r.action is self.action]
        if not patterns:
            return None
        for sender in ctx.senders():
            for pattern in patterns:
                if matches(pattern, sender):
                    return f"sender {sender} matches {self.action.value} pattern {pattern}"
        return None


class MemberModeration:
    name = "member_moderation"
    description = "The sender is a member whose posts are moderated."

    def check(self, ctx: PostContext) -> str | None:
        member = ctx.member()
        if member is not None and member.moderated:
            return f"post by moderated member {member.address}"
        return None


COMMANDS = frozenset({"subscribe", "unsubscribe", "help", "join", "leave", "confirm",
                      "remove", "signoff", "set", "who", "info"})
_REPLY = re.compile(r"^\s*((re|aw|sv|fwd?)\s*:\s*)+", re.IGNORECASE)
_FIRST_LINES = 5   # body lines looked at (Mailman's email_commands_max_lines)


def is_command(text: str) -> bool:
    """A line that is a mail command and nothing more: ``unsubscribe``, ``help``,
    ``subscribe me@example.org``, ``confirm TOKEN`` (a command word, at most one argument)."""
    words = _REPLY.sub("", text).strip().lower().split()
    return 0 < len(words) <= 2 and words[0] in COMMANDS


def _first_text_lines(message: EmailMessage, count: int) -> list[str]:
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return []
    try:
        content = part.get_content()
    except (LookupError, ValueError, KeyError):
        return []
    if not isinstance(content, str):
        return []
    lines = [line.strip() for line in content.splitlines() if line.strip()]
    return lines[:count]


class Administrivia:
    name = "administrivia"
    description = ("A request (unsubscribe, subscribe, help ...) sent to the posting "
                   "address instead of LIST-request.")

    def check(self, ctx: PostContext) -> str | None:
        if ctx.recipient.lower() != ctx.settings.address.lower():
            return None
        subject = str(ctx.message.get("Subject", ""))
        if is_command(subject):
            return "administrivia"
        for line in _first_text_lines(ctx.message, _FIRST_LINES):
            if line.startswith(">"):   # a quoted request in a reply is no request
                continue
            if is_command(line):
                return "administrivia"
        return None


class MaxMessageSize:
    name = "max_message_size"
    description = "The post is bigger than the list's max_message_size (bytes; 0: no limit)."

    def check(self, ctx: PostContext) -> str | None:
        limit = ctx.settings.max_message_size
        if limit and len(ctx.raw) > limit:
            return f"message size {len(ctx.raw)} bytes is over the list's limit of {limit}"
        return None


class MaxRecipients:
    name = "max_recipients"
    description = ("The post names more explicit recipients (To and Cc) than the list's "
                   "max_recipients (0: no limit).")

    def check(self, ctx: PostContext) -> str | None:
        limit = ctx.settings.max_recipients
        count = len(ctx.header_addresses("To", "Cc"))
        if limit and count > limit:
            return f"{count} explicit recipients, more than the list's limit of {limit}"
        return None


class ImplicitDestination:
    name = "implicit_destination"
    description = ("Neither the list address nor one of its acceptable_aliases is in To or "
                   "Cc (a Bcc to the list, often spam).")

    def check(self, ctx: PostContext) -> str | None:
        s = ctx.settings
        named = ctx.header_addresses("To", "Cc")
        accepted = [s.address, *s.acceptable_aliases]
        if any(matches(p, a) for a in named for p in accepted):
            return None
        return f"implicit destination: {s.address} is not in To or Cc"


class Policy:
    name = "posting_policy"
    description = ("The list's posting_policy: moderated holds every post, members holds "
                   "posts by non-members (moderators may post), open holds nothing.")

    def check(self, ctx: PostContext) -> str | None:
        policy = ctx.settings.posting_policy
        if policy is PostingPolicy.MODERATED:
            return "the list is moderated"
        if policy is PostingPolicy.MEMBERS:
            if ctx.member() is not None:
                return None
            if any(ctx.is_moderator(a) for a in ctx.senders()):
                return None
            return "post by non-member"
        return None


LOOP = Loop()
APPROVED = Approved()
DISCARD_THESE = AddressRules(DISCARD)
REJECT_THESE = AddressRules(REJECT)      # banned addresses
HOLD_THESE = AddressRules(HOLD)
ACCEPT_THESE = AddressRules(ACCEPT)      # non-members allowed to post
MEMBER_MODERATION = MemberModeration()
ADMINISTRIVIA = Administrivia()
MAX_MESSAGE_SIZE = MaxMessageSize()
MAX_RECIPIENTS = MaxRecipients()
IMPLICIT_DESTINATION = ImplicitDestination()
POSTING_POLICY = Policy()


# The moderation table: (rule, what a hit does), read top to bottom; the first hit decides.
MODERATION: tuple[tuple[Rule, RuleAction], ...] = (
    (LOOP,                 DISCARD),   # our own copy come back: drop it silently
    (APPROVED,             ACCEPT),    # a moderator's token: past every rule below
    (DISCARD_THESE,        DISCARD),
    (REJECT_THESE,         REJECT),    # banned
    (HOLD_THESE,           HOLD),
    (MEMBER_MODERATION,    HOLD),
    (ADMINISTRIVIA,        HOLD),
    (MAX_MESSAGE_SIZE,     HOLD),
    (MAX_RECIPIENTS,       HOLD),
    (IMPLICIT_DESTINATION, HOLD),
    (ACCEPT_THESE,         ACCEPT),    # past the posting policy, not past the checks above
    (POSTING_POLICY,       HOLD),
)


@dataclass(frozen=True, slots=True)
class RuleStage:
    """One row of the moderation table as a pipeline stage."""

    rule: Rule
    action: RuleAction

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def description(self) -> str:
        return self.rule.description

    def __call__(self, ctx: PostContext, /) -> Verdict | None:
        if ctx.decision is RuleAction.ACCEPT:   # an earlier rule accepted: rules are done
            return None
        reason = self.rule.check(ctx)
        if reason is None:
            ctx.rule_misses.append(self.name)
            return None
        ctx.rule_hits.append(self.name)
        return Verdict(self.action, reason)


def chain(table: tuple[tuple[Rule, RuleAction], ...]) -> tuple[RuleStage, ...]:
    """The table's rows as stages, in order."""
    return tuple(RuleStage(rule, action) for rule, action in table)


MODERATE: tuple[RuleStage, ...] = chain(MODERATION)
