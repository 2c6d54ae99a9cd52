"""The posting pipeline: what happens to a post to a list, in order, as data.

``POSTING`` is the order, read top to bottom (docs/lists.md draws the same list, and
tests/lists/test_pipeline.py holds the two together). :func:`run` is the engine: it calls
each stage with the one :class:`PostContext`, stops at the first HOLD, REJECT or DISCARD,
and records which rule decided and why (``ctx.decision``, ``ctx.reason``,
``ctx.decided_by``, ``ctx.rule_hits``/``rule_misses``: Mailman's ``rule_hits``). An
accepted post gets ``X-Postroom-Rule-Hits``/``-Misses`` headers and ``ctx.outgoing``, the
decorated bytes that fan-out personalises per member (``decorate.personalise``).

The stages after the rules are handlers: they change the post and never decide. What
comes after ``run`` (storing a held post, fan-out, archive) is the engine's, not a stage's:
each is a hand-off with its own storage.
"""

from __future__ import annotations

import logging

from postroom.lists import decorate, dmarc, rules
from postroom.lists.context import Handler, PostContext, Stage, Verdict
from postroom.lists.model import RuleAction

__all__ = ["HANDLERS", "POSTING", "Handler", "PostContext", "Stage", "Verdict", "run"]

log = logging.getLogger("postroom.lists")

POSTING: tuple[Stage, ...] = (
    # the rules, in the order of rules.MODERATION; the first hit decides
    *rules.MODERATE,
    # the handlers: the post as the members get it
    decorate.CLEANSE,              # the approval token and read receipts go
    dmarc.MITIGATE,                # From the list (or wrapped) for strict DMARC domains
    decorate.SUBJECT_PREFIX,
    decorate.REPLY_TO,
    decorate.LIST_HEADERS,         # List-Id, List-*, X-BeenThere, Precedence
    decorate.FOOTER,
)

# what an approved post goes through: the handlers, not the rules
HANDLERS: tuple[Stage, ...] = tuple(s for s in POSTING if isinstance(s, Handler))

RULE_HITS = "X-Postroom-Rule-Hits"
RULE_MISSES = "X-Postroom-Rule-Misses"


def run(ctx: PostContext, stages: tuple[Stage, ...] = POSTING) -> RuleAction:
    """Take the post through ``stages``; the decision (also in ``ctx.decision``)."""
    for stage in stages:
        verdict = stage(ctx)
        if verdict is None:
            continue
        ctx.decision, ctx.reason, ctx.decided_by = verdict.action, verdict.reason, stage.name
        log.info("list=%s stage=%s verdict=%s reason=%s", ctx.settings.address, stage.name,
                 verdict.action.value, verdict.reason)
        if verdict.action is not RuleAction.ACCEPT:
            return verdict.action
    if ctx.decision is None:
        ctx.decision, ctx.reason, ctx.decided_by = RuleAction.ACCEPT, "no rule hit", ""
    _record(ctx)
    ctx.outgoing = ctx.render()
    return RuleAction.ACCEPT


def _record(ctx: PostContext) -> None:
    del ctx.message[RULE_HITS]
    del ctx.message[RULE_MISSES]
    if ctx.rule_hits:
        ctx.message[RULE_HITS] = "; ".join(ctx.rule_hits)
    if ctx.rule_misses:
        ctx.message[RULE_MISSES] = "; ".join(ctx.rule_misses)
