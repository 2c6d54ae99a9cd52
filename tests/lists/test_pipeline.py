"""The posting pipeline: its order (the tuple docs/lists.md draws), the engine's stop,
its records of which rule decided and why, and the rule-hits header on accepted posts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from email import message_from_bytes, policy

from postroom.lists import pipeline
from postroom.lists.context import Handler, PostContext, TxtLookup, Verdict
from postroom.lists.model import ListSettings, Member, RuleAction
from postroom.lists.tokens import approval_token

LIST = "staff@lists.example.ac.uk"
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SECRET = b"list secret for tests"


def message(*headers: str, body: str = "Hello.\r\n") -> bytes:
    """Raw CRLF bytes from ``"Name: value"`` lines and a body."""
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def post(*extra: str, sender: str = "ann@example.org", to: str = LIST,
         body: str = "Hello.\r\n") -> bytes:
    return message(f"From: Ann Author <{sender}>", f"To: {to}", "Subject: hello",
                   "Message-ID: <1@example.org>", *extra, body=body)


def settings(**changes: object) -> ListSettings:
    s = ListSettings("staff", "lists.example.ac.uk", description="Staff list")
    for name, value in changes.items():
        setattr(s, name, value)
    return s


def make_ctx(raw: bytes, lst: ListSettings | None = None, *,
             members: Iterable[Member] = (Member("ann@example.org"),),
             moderators: Iterable[str] = (), sender: str = "ann@example.org",
             recipient: str = LIST, dns: TxtLookup | None = None, web_base: str = "",
             archive_url: str = "", secret: bytes = SECRET) -> PostContext:
    table = {m.address: m for m in members}
    mods = set(moderators)
    return PostContext.from_bytes(
        lst or settings(), raw, sender=sender, recipient=recipient,
        lookup_member=table.get, is_moderator=mods.__contains__, now=NOW,
        hostname="mail.example.ac.uk", dns=dns, secret=secret, web_base=web_base,
        archive_url=archive_url)


def test_posting_order_is_the_documented_one() -> None:
    assert [stage.name for stage in pipeline.POSTING] == [
        "loop",
        "approved",
        "address_rules.discard",
        "address_rules.reject",
        "address_rules.hold",
        "member_moderation",
        "administrivia",
        "max_message_size",
        "max_recipients",
        "implicit_destination",
        "address_rules.accept",
        "posting_policy",
        "cleanse",
        "dmarc_mitigation",
        "subject_prefix",
        "reply_to",
        "list_headers",
        "footer",
    ]
    assert all(stage.description for stage in pipeline.POSTING)
    assert len({stage.name for stage in pipeline.POSTING}) == len(pipeline.POSTING)


def test_member_post_is_accepted_with_rule_records() -> None:
    ctx = make_ctx(post())
    assert pipeline.run(ctx) is RuleAction.ACCEPT
    assert (ctx.decision, ctx.decided_by, ctx.rule_hits) == (RuleAction.ACCEPT, "", [])
    assert "posting_policy" in ctx.rule_misses
    assert ctx.outgoing is not None
    out = message_from_bytes(ctx.outgoing, policy=policy.default)
    assert out["X-Postroom-Rule-Misses"].startswith("loop; approved;")
    assert out["X-Postroom-Rule-Hits"] is None
    assert out["List-Id"] == '"Staff list" <staff.lists.example.ac.uk>'


def test_non_member_is_held_and_the_rule_is_recorded() -> None:
    ctx = make_ctx(post(sender="eve@elsewhere.example"), sender="eve@elsewhere.example")
    assert pipeline.run(ctx) is RuleAction.HOLD
    assert (ctx.decided_by, ctx.reason) == ("posting_policy", "post by non-member")
    assert ctx.rule_hits == ["posting_policy"]
    assert ctx.outgoing is None
    assert "List-Id" not in ctx.message        # stopped before the handlers


def test_approved_post_skips_the_remaining_rules_and_is_cleansed() -> None:
    token = approval_token(SECRET, "staff.lists.example.ac.uk")
    ctx = make_ctx(post(f"Approved: {token}", sender="eve@elsewhere.example"),
                   sender="eve@elsewhere.example")
    assert pipeline.run(ctx) is RuleAction.ACCEPT
    assert (ctx.decided_by, ctx.rule_hits, ctx.rule_misses) == ("approved", ["approved"],
                                                                 ["loop"])
    assert ctx.outgoing is not None
    out = message_from_bytes(ctx.outgoing, policy=policy.default)
    assert out["X-Postroom-Rule-Hits"] == "approved"
    assert out["Approved"] is None                 # the token never reaches the members


def test_forged_rule_records_are_replaced() -> None:
    ctx = make_ctx(post("X-Postroom-Rule-Hits: approved"))
    pipeline.run(ctx)
    assert ctx.outgoing is not None
    out = message_from_bytes(ctx.outgoing, policy=policy.default)
    assert out.get_all("X-Postroom-Rule-Hits") is None


def test_run_stops_at_the_first_decision_and_takes_any_stages() -> None:
    called: list[str] = []

    def note(name: str) -> Handler:
        return Handler(name, f"note {name}", lambda ctx: called.append(name))

    class Reject:
        name = "always_reject"
        description = "rejects"

        def __call__(self, ctx: PostContext, /) -> Verdict | None:
            return Verdict.reject("no")

    ctx = make_ctx(post())
    assert pipeline.run(ctx, (note("a"), Reject(), note("b"))) is RuleAction.REJECT
    assert called == ["a"]
    assert (ctx.decision, ctx.decided_by, ctx.reason) == (RuleAction.REJECT,
                                                           "always_reject", "no")
