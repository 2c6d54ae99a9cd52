"""A post to a big list is queued as messages of at most ``fanout.ENVELOPE_RECIPIENTS``
members, read from the store a page at a time; every member is in exactly one of them.
A post taken up again after the engine died half-way (a ``kill -9`` of the process, here
an injection that fails) queues only the members not queued before, and is not archived
twice. The fan-out record that says so goes when the post has left the queue."""

from __future__ import annotations

import asyncio
import mailbox
from collections import Counter
from pathlib import Path

import pytest

from postroom import runtime
from postroom.envelope import Envelope
from postroom.lists import fanout, store
from postroom.lists.context import NoDns
from postroom.lists.engine import ListEngine
from postroom.lists.model import Member
from postroom.queue.journal import FANOUT_SUFFIX, SENT, FanoutRecord, SentJournal
from postroom.site import Site
from tests.lists.conftest import LIST

MEMBERS = [f"m{n:04d}@example.net" for n in range(2500)]
POST = (f"From: m0007@example.net\r\nTo: {LIST}\r\nSubject: hello all\r\n"
        "Message-ID: <p1@example.net>\r\n\r\nHello.\r\n").encode()


class Died(Exception):
    """The process died (``kill -9``) after the messages queued so far."""


class Queue:
    """What the engine queued; ``die_after``: fail the injection after that many."""

    def __init__(self, die_after: int | None = None) -> None:
        self.queued: list[Envelope] = []
        self.die_after = die_after

    async def inject(self, env: Envelope, message: bytes) -> str:
        if self.die_after is not None and len(self.queued) == self.die_after:
            raise Died
        self.queued.append(env)
        return f"Q{len(self.queued):05d}x"

    def members(self) -> Counter[str]:
        return Counter(r.address for e in self.queued for r in e.recipients)


@pytest.fixture
def big_list(list_site: Site) -> Site:
    name, domain = LIST.split("@")
    store.add_members(list_site, name, domain, [Member(a) for a in MEMBERS])
    Path(list_site.queue_dir).mkdir(parents=True)  # the spool's (made by serve)
    return list_site


def post_envelope(post_id: str) -> Envelope:
    return Envelope("m0007@example.net", [], 0.0, id=post_id)


def handle(site: Site, queue: Queue, post_id: str) -> None:
    rt = runtime.build(site.home)
    engine = ListEngine(lambda: rt, queue.inject, dns=NoDns())
    asyncio.run(engine.handle(post_envelope(post_id), POST, LIST, LIST))


def archived(site: Site) -> int:
    return sum(len(mailbox.mbox(p)) for p in site.home.glob("archives/*/*.mbox"))


def test_a_big_post_is_queued_in_messages_of_at_most_1000_members(big_list: Site) -> None:
    queue = Queue()
    handle(big_list, queue, "PostA00000001")
    assert [len(e.recipients) for e in queue.queued] == [1000, 1000, 500]
    assert queue.members() == Counter(MEMBERS)  # every member once
    for env in queue.queued:
        assert env.kind == fanout.KIND and env.list_post == LIST
        assert env.sender == "staff-bounces@inf.example.ac.uk"
    assert archived(big_list) == 1


def test_a_post_taken_up_again_after_the_engine_died_queues_nobody_twice(
        big_list: Site) -> None:
    first = Queue(die_after=2)
    with pytest.raises(Died):
        handle(big_list, first, "PostB00000001")
    assert len(first.queued) == 2
    again = Queue()
    handle(big_list, again, "PostB00000001")  # the post's next round, after the restart
    assert [len(e.recipients) for e in again.queued] == [500]
    assert first.members() + again.members() == Counter(MEMBERS)
    assert archived(big_list) == 1
    # a third try (the round died after the engine was done) queues nothing
    last = Queue()
    handle(big_list, last, "PostB00000001")
    assert last.queued == [] and archived(big_list) == 1
    # another post to the same list is a fan-out of its own
    other = Queue()
    handle(big_list, other, "PostC00000001")
    assert other.members() == Counter(MEMBERS)


def test_the_fan_out_record_stays_until_the_post_has_left_the_queue(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    (root / "active").mkdir(parents=True)
    record = FanoutRecord(root, "PostD00000001")
    record.add(LIST, "m0999@example.net", 1000, "Q1")
    record.add("other@inf.example.ac.uk", "z@example.net", 3, "Q2")
    record.add(LIST, "m1999@example.net", 1000, "Q3")
    with (root / SENT / ("PostD00000001" + FANOUT_SUFFIX)).open("ab") as f:
        f.write(b"staff@inf.example.ac.uk\tm2")  # the kill came in the middle of a line
    progress = record.progress(LIST)
    assert (progress.after, progress.messages, progress.members) == (
        "m1999@example.net", 2, 2000)
    journal = SentJournal(root)
    (root / "active" / "PostD00000001.env").write_text("{}")
    journal.clear("PostD00000001")  # a round stored the post: still queued
    assert record.progress(LIST).messages == 2
    (root / "active" / "PostD00000001.env").unlink()
    journal.clear("PostD00000001")  # the post is delivered and gone
    assert record.progress(LIST).messages == 0
    assert not record.path.exists()


def test_a_fan_out_goes_on_after_the_last_member_queued_in_the_stores_own_order() -> None:
    # PostgreSQL's collation may sort "a.b" after "ab", unlike Python: what counts is
    # where the store read the last member queued, not Python's string order
    order = ["ab@x.org", "a.b@x.org", "a-c@x.org", "b@x.org", "c@x.org"]
    pages = [[Member(a) for a in order[:2]], [Member(a) for a in order[2:]]]
    after = [m.address for part in fanout.slices(pages, after="a.b@x.org", size=2)
             for m in part]
    assert after == ["a-c@x.org", "b@x.org", "c@x.org"]
    # the last member queued left the list meanwhile: Python's order is the best guess
    # (here ab@, queued before, gets the post again: a repeat, nobody left out)
    gone = [[Member(a) for a in order if a != "a.b@x.org"]]
    assert [m.address for part in fanout.slices(gone, after="a.b@x.org", after_listed=False)
            for m in part] == ["ab@x.org", "b@x.org", "c@x.org"]
