"""The posting rules, a table per rule: (what the post is, whether the rule hits), then the
moderation table's verdicts through the engine."""

from __future__ import annotations

import pytest

from postroom.lists import pipeline, rules
from postroom.lists.model import AddressRule, ListSettings, Member, PostingPolicy, RuleAction
from postroom.lists.tokens import approval_token
from tests.lists.test_pipeline import LIST, SECRET, make_ctx, message, post, settings

ANN = "ann@example.org"
EVE = "eve@elsewhere.example"


@pytest.mark.parametrize(("extra", "hit"), [
    ((), False),
    (("X-BeenThere: staff@lists.example.ac.uk",), True),
    (("X-BeenThere: STAFF@lists.example.ac.uk",), True),
    (("X-BeenThere: other@lists.example.ac.uk",), False),
    (('List-Id: "Staff" <staff.lists.example.ac.uk>',), True),
    (("List-Id: <staff.lists.example.ac.uk>",), True),
    (("List-Id: <other.lists.example.ac.uk>",), False),
])
def test_loop(extra: tuple[str, ...], hit: bool) -> None:
    assert (rules.LOOP.check(make_ctx(post(*extra))) is not None) is hit


TOKEN = approval_token(SECRET, "staff.lists.example.ac.uk")


@pytest.mark.parametrize(("extra", "secret", "hit"), [
    ((), SECRET, False),
    ((f"Approved: {TOKEN}",), SECRET, True),
    ((f"Approve: {TOKEN.upper()}",), SECRET, True),
    (("Approved: guess",), SECRET, False),
    ((f"Approved: {approval_token(SECRET, 'other.lists.example.ac.uk')}",), SECRET, False),
    ((f"Approved: {TOKEN}",), b"", False),          # no secret: no approval
])
def test_approved(extra: tuple[str, ...], secret: bytes, hit: bool) -> None:
    ctx = make_ctx(post(*extra), secret=secret)
    assert (rules.APPROVED.check(ctx) is not None) is hit


RULES = [AddressRule("eve@elsewhere.example", RuleAction.REJECT),
         AddressRule(r"^.*@spam\.example$", RuleAction.DISCARD),
         AddressRule("^bob@", RuleAction.HOLD),
         AddressRule(r"^[", RuleAction.HOLD),                     # broken: matches nothing
         AddressRule("guest@partner.example", RuleAction.ACCEPT)]


@pytest.mark.parametrize(("sender", "rule", "hit"), [
    (EVE, rules.REJECT_THESE, True),
    ("EVE@Elsewhere.Example", rules.REJECT_THESE, True),
    (ANN, rules.REJECT_THESE, False),
    ("x@spam.example", rules.DISCARD_THESE, True),
    ("x@spam.example.org", rules.DISCARD_THESE, False),
    ("bob@example.org", rules.HOLD_THESE, True),
    ("guest@partner.example", rules.ACCEPT_THESE, True),
    ("guest@partner.example", rules.HOLD_THESE, False),
])
def test_address_rules(sender: str, rule: rules.AddressRules, hit: bool) -> None:
    ctx = make_ctx(post(sender=sender), settings(address_rules=RULES), sender=sender)
    assert (rule.check(ctx) is not None) is hit


def test_address_rules_look_at_the_envelope_sender_too() -> None:
    ctx = make_ctx(post(), settings(address_rules=RULES), sender=EVE)
    assert rules.REJECT_THESE.check(ctx) == (
        "sender eve@elsewhere.example matches reject pattern eve@elsewhere.example")


@pytest.mark.parametrize(("member", "hit"), [
    (Member(ANN), False), (Member(ANN, moderated=True), True)])
def test_member_moderation(member: Member, hit: bool) -> None:
    ctx = make_ctx(post(), members=[member])
    assert (rules.MEMBER_MODERATION.check(ctx) is not None) is hit


@pytest.mark.parametrize(("subject", "body", "recipient", "hit"), [
    ("unsubscribe", "", LIST, True),
    ("Re: Unsubscribe", "", LIST, True),
    ("help", "", LIST, True),
    ("subscribe ann@example.org", "", LIST, True),
    ("help with the printer", "", LIST, False),
    ("hello", "unsubscribe\r\n", LIST, True),
    ("hello", "\r\n\r\n  subscribe  \r\nthanks\r\n", LIST, True),
    ("hello", "Please unsubscribe me from this list.\r\n", LIST, False),
    ("hello", "> unsubscribe\r\nno, stay\r\n", LIST, False),
    ("hello", "1\r\n2\r\n3\r\n4\r\n5\r\nunsubscribe\r\n", LIST, False),   # past 5 lines
    ("unsubscribe", "", "staff-request@lists.example.ac.uk", False),
])
def test_administrivia(subject: str, body: str, recipient: str, hit: bool) -> None:
    raw = message(f"From: {ANN}", f"To: {LIST}", f"Subject: {subject}", body=body or "x\r\n")
    ctx = make_ctx(raw, recipient=recipient)
    assert (rules.ADMINISTRIVIA.check(ctx) == "administrivia") is hit


@pytest.mark.parametrize(("limit", "size", "hit"), [
    (0, 100_000, False), (10_000, 5_000, False), (10_000, 20_000, True)])
def test_max_message_size(limit: int, size: int, hit: bool) -> None:
    ctx = make_ctx(post(body="x" * size + "\r\n"), settings(max_message_size=limit))
    assert (rules.MAX_MESSAGE_SIZE.check(ctx) is not None) is hit


def _to(count: int) -> str:
    return ", ".join([LIST, *(f"r{i}@example.org" for i in range(count - 1))])


@pytest.mark.parametrize(("limit", "to", "cc", "hit"), [
    (3, _to(3), "", False),
    (3, _to(4), "", True),
    (3, _to(2), "a@x.example, b@x.example", True),
    (0, _to(50), "", False),
])
def test_max_recipients(limit: int, to: str, cc: str, hit: bool) -> None:
    extra = (f"Cc: {cc}",) if cc else ()
    ctx = make_ctx(post(*extra, to=to), settings(max_recipients=limit))
    assert (rules.MAX_RECIPIENTS.check(ctx) is not None) is hit


@pytest.mark.parametrize(("to", "cc", "aliases", "hit"), [
    (LIST, "", [], False),
    ("Staff <STAFF@lists.example.ac.uk>", "", [], False),
    ("someone@example.org", LIST, [], False),
    ("someone@example.org", "", [], True),
    ("staff@old.example.ac.uk", "", ["staff@old.example.ac.uk"], False),
    ("all-staff@example.ac.uk", "", [r"^.*staff@example\.ac\.uk$"], False),
    ("undisclosed-recipients:;", "", [], True),
])
def test_implicit_destination(to: str, cc: str, aliases: list[str], hit: bool) -> None:
    extra = (f"Cc: {cc}",) if cc else ()
    ctx = make_ctx(post(*extra, to=to), settings(acceptable_aliases=aliases))
    assert (rules.IMPLICIT_DESTINATION.check(ctx) is not None) is hit


@pytest.mark.parametrize(("policy", "sender", "moderators", "reason"), [
    (PostingPolicy.MEMBERS, ANN, [], None),
    (PostingPolicy.MEMBERS, EVE, [], "post by non-member"),
    (PostingPolicy.MEMBERS, EVE, [EVE], None),
    (PostingPolicy.MODERATED, ANN, [], "the list is moderated"),
    (PostingPolicy.OPEN, EVE, [], None),
])
def test_posting_policy(policy: PostingPolicy, sender: str, moderators: list[str],
                        reason: str | None) -> None:
    ctx = make_ctx(post(sender=sender), settings(posting_policy=policy), sender=sender,
                   moderators=moderators)
    assert rules.POSTING_POLICY.check(ctx) == reason


def test_moderation_is_one_table_of_rule_and_action() -> None:
    assert [(rule.name, action.value) for rule, action in rules.MODERATION] == [
        ("loop", "discard"),
        ("approved", "accept"),
        ("address_rules.discard", "discard"),
        ("address_rules.reject", "reject"),
        ("address_rules.hold", "hold"),
        ("member_moderation", "hold"),
        ("administrivia", "hold"),
        ("max_message_size", "hold"),
        ("max_recipients", "hold"),
        ("implicit_destination", "hold"),
        ("address_rules.accept", "accept"),
        ("posting_policy", "hold"),
    ]


@pytest.mark.parametrize(("raw", "sender", "lst", "decision", "decided_by"), [
    (post("X-BeenThere: staff@lists.example.ac.uk"), ANN, settings(), "discard", "loop"),
    (post(sender=EVE), EVE, settings(address_rules=RULES), "reject", "address_rules.reject"),
    (post(sender="x@spam.example"), "x@spam.example", settings(address_rules=RULES),
     "discard", "address_rules.discard"),
    (post(sender="guest@partner.example"), "guest@partner.example",
     settings(address_rules=RULES), "accept", "address_rules.accept"),
    (post(to="someone@example.org"), ANN, settings(), "hold", "implicit_destination"),
    (post(sender=EVE), EVE, settings(), "hold", "posting_policy"),
    # a moderator's approval comes before the address rules
    (post(f"Approved: {TOKEN}", sender=EVE), EVE, settings(address_rules=RULES),
     "accept", "approved"),
])
def test_the_table_decides(raw: bytes, sender: str, lst: ListSettings, decision: str,
                           decided_by: str) -> None:
    ctx = make_ctx(raw, lst, sender=sender)
    assert pipeline.run(ctx).value == decision
    assert ctx.decided_by == decided_by
    assert ctx.rule_hits[-1] == decided_by
