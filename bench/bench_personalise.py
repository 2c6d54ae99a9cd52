#!/usr/bin/env python3
"""Per-member rendering of a list post: ``decorate.personalise`` over 10,000 members.

Fan-out stores the decorated post once and renders each member's copy at delivery time;
the per-member part is the RFC 8058 one-click ``List-Unsubscribe`` with the member's HMAC
token. This measures that part alone, in process, for a realistic post (a 6 KB text body
through the real pipeline): ``personalise`` by itself, and ``unsubscribe_token`` +
``personalise`` + ``verp_sender`` (everything a member's copy costs before it is written
to a socket). The goal (issue 11): well under the 2 s budget of a 10,000-member personalised
fan-out; the brief for this module aims at < 20 us per member. Figures go to
docs/performance.md, not here. Run::

    .venv/bin/python bench/bench_personalise.py [--members 10000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from postroom.lists import pipeline
from postroom.lists.context import PostContext
from postroom.lists.decorate import UnsubscribeLinks, personalise
from postroom.lists.model import ListSettings, Member
from postroom.lists.tokens import unsubscribe_token, verp_sender

SECRET = b"bench secret"


def decorated_post() -> tuple[ListSettings, bytes]:
    lst = ListSettings("staff", "lists.example.ac.uk", description="Staff list",
                       subject_prefix="[staff] ", footer="-- \nstaff mailing list\n")
    body = ("A line of an ordinary announcement, long enough to be realistic.\r\n" * 90)
    raw = ("From: Ann <ann@example.org>\r\nTo: staff@lists.example.ac.uk\r\n"
           "Subject: the weekly notice\r\nMessage-ID: <1@example.org>\r\n"
           "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n" + body).encode()
    ctx = PostContext.from_bytes(
        lst, raw, sender="ann@example.org", recipient=lst.address,
        lookup_member=lambda a: Member(a), is_moderator=lambda a: False,
        now=datetime.now(UTC), hostname="mail.example.ac.uk", secret=SECRET,
        web_base="https://lists.example.ac.uk")
    assert pipeline.run(ctx).value == "accept" and ctx.outgoing is not None
    return lst, ctx.outgoing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    lst, common = decorated_post()
    links = UnsubscribeLinks.for_list(lst, "https://lists.example.ac.uk")
    members = [f"member{i:05d}.name@dept{i % 50}.example.ac.uk" for i in range(args.members)]
    tokens = [unsubscribe_token(SECRET, lst.list_id, m) for m in members]

    only: list[float] = []
    whole: list[float] = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for member, token in zip(members, tokens, strict=True):
            personalise(common, member, token, links)
        only.append(time.perf_counter() - start)
        start = time.perf_counter()
        for member in members:
            personalise(common, member, unsubscribe_token(SECRET, lst.list_id, member), links)
            verp_sender(lst.name, lst.domain, member)
        whole.append(time.perf_counter() - start)

    n = args.members
    print(f"decorated post: {len(common)} bytes; {n} members; median of {args.rounds} rounds")
    print(f"personalise():                       {statistics.median(only) / n * 1e6:6.2f} us"
          f" per member ({statistics.median(only) * 1e3:.1f} ms for {n})")
    print(f"token + personalise() + verp_sender: {statistics.median(whole) / n * 1e6:6.2f} us"
          f" per member ({statistics.median(whole) * 1e3:.1f} ms for {n})")


if __name__ == "__main__":
    main()
