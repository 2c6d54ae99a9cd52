"""The spool in one process: round trips, concurrency, group commit, recovery, failures."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from postroom.envelope import Envelope, RcptState
from postroom.errors import EX_NOUSER, QueueError
from postroom.queue import ids
from postroom.queue import spool as spool_mod
from postroom.queue.spool import CorruptEnvelope, Spool, UnknownMessage
from tests.queue.helpers import child, files_under
from tests.queue.spool_child import envelope, message

# ------------------------------------------------------------------ round trips


def test_put_sync_load_round_trip(spool: Spool, root: Path) -> None:
    env = envelope("t", 7)
    data = message("t", 7)
    qid = spool.put_sync(env, data)
    assert ids.is_valid(qid) and len(qid) == ids.LENGTH
    assert (env.id, env.size) == (qid, len(data))
    loaded = spool.load(qid)
    assert loaded == env
    assert loaded.held is False
    assert spool.read_message(qid) == data
    assert spool.message_path(qid) == root / "msg" / f"{qid}.msg"
    assert spool.message_path(qid).read_bytes() == data
    assert json.loads((root / "active" / f"{qid}.env").read_bytes())["envid"] == "t:7"
    assert spool.ids() == [qid]
    assert files_under(root) == ["active", f"active/{qid}.env", "corrupt", "free", "hold",
                                 "lock", "msg", f"msg/{qid}.msg", "tmp"]


async def test_async_put_round_trip(spool: Spool) -> None:
    env = envelope("a", 1)
    qid = await spool.put(env, message("a", 1))
    assert spool.load(qid) == env
    assert spool.read_message(qid) == message("a", 1)


def test_preset_id_is_kept_and_must_be_free(spool: Spool) -> None:
    """The SMTP layer names the ID in the Received header before the message is queued."""
    qid = ids.new_id()
    env = envelope("p", 1)
    env.id = qid
    assert spool.put_sync(env, message("p", 1)) == qid
    again = envelope("p", 2)
    again.id = qid
    with pytest.raises(QueueError, match="in use"):
        spool.put_sync(again, message("p", 2))
    bad = envelope("p", 3)
    bad.id = "../../etc"
    with pytest.raises(QueueError, match="not a valid queue ID"):
        spool.put_sync(bad, message("p", 3))
    assert spool.ids() == [qid]
    assert spool.load(qid).envid == "p:1"


def test_ids_are_in_arrival_order(spool: Spool) -> None:
    made = [spool.put_sync(envelope("o", i), message("o", i)) for i in range(20)]
    assert spool.ids() == made
    assert [spool.load(q).envid for q in spool.ids()] == [f"o:{i}" for i in range(20)]


def test_update_rewrites_envelope_only(spool: Spool, root: Path) -> None:
    qid = spool.put_sync(envelope("u", 1), message("u", 1))
    msg_inode = os.stat(spool.message_path(qid)).st_ino
    env = spool.load(qid)
    d = env.recipients[0].deliveries[0]
    d.state, d.tries, d.last_error = RcptState.DEFERRED, 1, "451 4.4.1 Connection refused"
    d.next_attempt = 1234.5
    spool.update(env)
    again = spool.load(qid)
    assert again.recipients[0].deliveries[0] == d
    assert os.stat(spool.message_path(qid)).st_ino == msg_inode
    assert spool.read_message(qid) == message("u", 1)
    assert files_under(root / "active") == [f"{qid}.env"]
    assert files_under(root / "tmp") == []


def test_update_of_unknown_message(spool: Spool) -> None:
    env = envelope("u", 2)
    env.id = ids.new_id()
    with pytest.raises(UnknownMessage):
        spool.update(env)


def test_hold_release(spool: Spool, root: Path) -> None:
    qid = spool.put_sync(envelope("h", 1), message("h", 1))
    other = spool.put_sync(envelope("h", 2), message("h", 2))
    spool.hold(qid)
    assert spool.is_held(qid) and not spool.is_held(other)
    assert spool.ids() == [qid, other]
    assert spool.ids(include_held=False) == [other]
    assert (root / "hold" / f"{qid}.env").exists()
    assert not (root / "active" / f"{qid}.env").exists()
    env = spool.load(qid)
    assert env.held is True
    spool.hold(qid)  # holding again changes nothing
    env.recipients[0].deliveries[0].tries = 3  # updates land while held
    spool.update(env)
    assert spool.message_path(qid) == root / "msg" / f"{qid}.msg"  # the message never moves
    spool.release(qid)
    spool.release(qid)
    assert not spool.is_held(qid)
    assert spool.load(qid).held is False
    assert spool.load(qid).recipients[0].deliveries[0].tries == 3
    assert spool.read_message(qid) == message("h", 1)


def test_delete(spool: Spool, root: Path) -> None:
    qid = spool.put_sync(envelope("d", 1), message("d", 1))
    held = spool.put_sync(envelope("d", 2), message("d", 2))
    spool.hold(held)
    spool.delete(qid)
    spool.delete(held)
    assert spool.ids() == []
    with pytest.raises(UnknownMessage):
        spool.load(qid)
    with pytest.raises(UnknownMessage):
        spool.delete(qid)
    for d in ("tmp", "msg", "active", "hold"):
        assert files_under(root / d) == []


def test_delete_forgets_the_sent_journal_and_fanout_record(spool: Spool, root: Path) -> None:
    """``queue delete`` of a post cut short mid fan-out: nothing of it stays in sent/."""
    qid = spool.put_sync(envelope("d", 3), message("d", 3))
    (root / "sent").mkdir(exist_ok=True)
    (root / "sent" / qid).write_text("0\t250 ok\n")
    (root / "sent" / f"{qid}.fanout").write_text("list@example.org\tm@example.org\t1\tX\n")
    other = root / "sent" / "OTHER.fanout"
    other.write_text("")
    spool.delete(qid)
    assert sorted(p.name for p in (root / "sent").iterdir()) == ["OTHER.fanout"]


def test_deletes_after_delivery_share_a_later_fsync(spool: Spool, root: Path) -> None:
    """A delivered message is gone from the queue when delete returns; the directory
    fsync that makes that survive a power cut runs later in a thread, shared by the
    deletes meanwhile, and is done by the time the spool is closed."""
    gate = threading.Event()
    active_sync = spool._syncs["active"]
    real_flush = active_sync.flush
    flushes = 0

    def held_flush() -> None:
        nonlocal flushes
        assert gate.wait(10)
        flushes += 1
        real_flush()

    made = [spool.put_sync(envelope("dl", i), message("dl", i)) for i in range(20)]
    active_sync.flush = held_flush  # type: ignore[method-assign]
    for qid in made:
        spool.delete(qid, delivered=True)  # never waits for the held fsync
    assert spool.ids() == [] and files_under(root / "active") == []
    assert flushes == 0
    gate.set()
    spool.close()
    assert 1 <= flushes <= 2  # one in flight when the others came, and one after them


@pytest.mark.parametrize("bad", ["8DtEjreMK02JV", "../active", "a/b", "", "x" * 40, "a.b.c.d"])
def test_unknown_or_malformed_ids(spool: Spool, bad: str) -> None:
    for op in (spool.load, spool.read_message, spool.message_path, spool.hold, spool.release,
               spool.delete, spool.is_held):
        with pytest.raises(UnknownMessage) as info:
            op(bad)
        assert info.value.exit_code == EX_NOUSER


def test_update_during_concurrent_hold_and_release(spool: Spool, root: Path) -> None:
    """Updates follow the message's directory, so holds and releases never lose them."""
    qid = spool.put_sync(envelope("r", 1), message("r", 1))
    stop = threading.Event()

    def toggle() -> None:
        while not stop.is_set():
            spool.hold(qid)
            spool.release(qid)

    t = threading.Thread(target=toggle)
    t.start()
    try:
        for tries in range(1, 101):
            env = spool.load(qid)
            env.recipients[0].deliveries[0].tries = tries
            spool.update(env)
            assert spool.load(qid).recipients[0].deliveries[0].tries == tries  # not lost
    finally:
        stop.set()
        t.join()
    assert [p.parent.name for p in root.glob(f"*/{qid}.env")] == ["active"]  # one envelope
    assert spool.load(qid).recipients[0].deliveries[0].tries == 100
    assert spool.read_message(qid) == message("r", 1)


# ------------------------------------------------------------------ concurrency


async def test_many_concurrent_async_puts(spool: Spool, root: Path) -> None:
    """500 messages from 50 tasks: all present, all intact, directory fsyncs shared."""
    syncs = 0
    active_sync = spool._syncs["active"]
    real_flush = active_sync.flush

    def counting_flush() -> None:
        nonlocal syncs
        syncs += 1
        real_flush()

    active_sync.flush = counting_flush  # type: ignore[method-assign]
    made: dict[str, int] = {}

    async def task(t: int) -> None:
        for i in range(t * 10, t * 10 + 10):
            made[await spool.put(envelope("c", i), message("c", i))] = i

    await asyncio.gather(*(task(t) for t in range(50)))
    assert len(made) == 500
    assert spool.ids() == sorted(made)
    for qid, i in made.items():
        assert spool.load(qid).envid == f"c:{i}"
        assert spool.read_message(qid) == message("c", i)
    assert files_under(root / "tmp") == []
    # group commit: the 50 puts of one pass of the loop share one fsync of active/, so
    # 10 passes make 10 (a put that fsynced alone would make 500)
    assert syncs == 10


async def test_the_loop_runs_while_a_round_waits_for_the_disk(spool: Spool) -> None:
    """The fsyncs of a round run beside the event loop: while the disk holds the first
    put's round, the loop goes on and stages more puts, which are committed together by
    the next round, and no put is answered before its own round is durable."""
    gate = threading.Event()
    msg_sync = spool._syncs["msg"]
    real_flush = msg_sync.flush
    rounds = 0

    def slow_flush() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            assert gate.wait(10), "the loop never let the first round go"
        real_flush()

    msg_sync.flush = slow_flush  # type: ignore[method-assign]
    first = asyncio.ensure_future(spool.put(envelope("g", 0), message("g", 0)))
    await asyncio.sleep(0.05)  # the first round is now in the commit thread, held
    assert rounds == 1 and not first.done()
    later = [asyncio.ensure_future(spool.put(envelope("g", i), message("g", i)))
             for i in range(1, 6)]
    ticks = 0
    for _ in range(10):  # the loop is free: other work runs meanwhile
        await asyncio.sleep(0.001)
        ticks += 1
    assert ticks == 10 and not first.done() and not any(t.done() for t in later)
    gate.set()
    made = [await first] + [await t for t in later]
    assert rounds == 2  # the five staged meanwhile shared the second round
    assert sorted(made) == spool.ids()
    assert [spool.load(q).envid for q in made] == [f"g:{i}" for i in range(6)]


async def test_a_failed_fsync_fails_that_put_and_leaves_nothing(
        spool: Spool, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An fsync error in the commit thread reaches the waiting put as a QueueError naming
    the file; its files are gone, and the next put works."""
    real_fsync = os.fsync

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(QueueError, match=r"cannot queue message: .*Input/output error.*\.msg"):
        await spool.put(envelope("e", 1), message("e", 1))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert spool.ids() == []
    assert files_under(root / "tmp") == [] and files_under(root / "msg") == []
    qid = await spool.put(envelope("e", 2), message("e", 2))
    assert spool.ids() == [qid]


def test_put_sync_from_threads(spool: Spool) -> None:
    made: list[tuple[str, int]] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(t * 25, t * 25 + 25):
            qid = spool.put_sync(envelope("th", i), message("th", i))
            with lock:
                made.append((qid, i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({q for q, _ in made}) == 200
    for qid, i in made:
        assert spool.read_message(qid) == message("th", i)


class _SlowSync(spool_mod._DirSync):
    """A _DirSync whose first fsync waits until ``expected`` callers are queued."""

    def __init__(self, path: Path, expected: int) -> None:
        super().__init__(path)
        self.expected = expected
        self.flushes = 0
        self.fail_next = False

    def flush(self) -> None:
        self.flushes += 1
        if self.flushes == 1:
            deadline = time.monotonic() + 10
            while self._issued < self.expected and time.monotonic() < deadline:
                time.sleep(0.001)
        if self.fail_next:
            self.fail_next = False
            raise OSError(5, "Input/output error")


def test_dir_sync_group_commit(tmp_path: Path) -> None:
    """Callers that arrive during an fsync wait for the *next* one, which covers all."""
    sync = _SlowSync(tmp_path, expected=20)
    seen: list[int] = []
    first = threading.Thread(target=sync.sync)
    first.start()
    while sync.flushes == 0:
        time.sleep(0.001)

    def later() -> None:
        sync.sync()
        seen.append(sync.flushes)

    others = [threading.Thread(target=later) for _ in range(19)]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join()
    assert sync.flushes == 2
    assert seen == [2] * 19  # none returned on the fsync that began before its call


def test_dir_sync_failure_is_raised_and_retried(tmp_path: Path) -> None:
    sync = _SlowSync(tmp_path, expected=1)
    sync.fail_next = True
    with pytest.raises(OSError):
        sync.sync()
    sync.sync()
    assert sync.flushes == 2


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_spool_used_after_fork(spool: Spool, root: Path) -> None:
    """A worker forked after the spool was used puts with its own lock and state."""
    first = asyncio.run(spool.put(envelope("f", 1), message("f", 1)))
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_put_in_child, args=(spool,))
    proc.start()
    proc.join(timeout=60)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
    assert proc.exitcode == 0
    assert len(spool.ids()) == 2 and first in spool.ids()
    second = next(q for q in spool.ids() if q != first)
    assert spool.read_message(second) == message("f", 2)
    assert asyncio.run(spool.put(envelope("f", 3), message("f", 3))) in spool.ids()


def _put_in_child(spool: Spool) -> None:
    asyncio.run(spool.put(envelope("f", 2), message("f", 2)))
    spool.close()


# ------------------------------------------------------------------ failures


def test_unusable_spool_directory() -> None:
    with pytest.raises(QueueError, match="cannot use spool"):
        Spool(Path("/proc/postroom-test/queue"))


def test_tmp_is_a_file(spool: Spool, root: Path) -> None:
    (root / "tmp").rmdir()
    (root / "tmp").write_text("not a directory")
    env = envelope("x", 1)
    with pytest.raises(QueueError, match="cannot queue message"):
        spool.put_sync(env, message("x", 1))
    assert env.id == "" and env.size == 0
    with pytest.raises(QueueError):
        asyncio.run(spool.put(env, message("x", 1)))
    assert spool.ids() == []
    assert files_under(root) == ["active", "corrupt", "free", "hold", "lock", "msg", "tmp"]


async def test_failed_directory_fsync_fails_the_put_and_keeps_nothing(spool: Spool,
                                                                      root: Path) -> None:
    def broken() -> None:
        raise OSError(5, "Input/output error")

    spool._syncs["msg"].flush = broken  # type: ignore[method-assign]
    with pytest.raises(QueueError, match="Input/output error"):
        await spool.put(envelope("io", 1), message("io", 1))
    assert spool.ids() == []
    assert files_under(root / "msg") == [] and files_under(root / "tmp") == []
    assert spool._inflight == set()  # recover() would otherwise skip its leftovers forever


def test_rename_fails_and_nothing_partial_remains(spool: Spool, root: Path) -> None:
    (root / "active").rmdir()
    (root / "active").write_text("not a directory")
    with pytest.raises(QueueError, match="cannot queue message"):
        spool.put_sync(envelope("x", 2), message("x", 2))
    assert files_under(root / "tmp") == files_under(root / "msg") == []


def test_file_size_limit_reached(root: Path) -> None:
    """A write that fails halfway (EFBIG, as ENOSPC would) leaves no partial files."""
    proc = child("fsize", str(root), "5000")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert out.startswith("QueueError: cannot queue message:")
    for d in ("tmp", "msg", "active"):
        assert files_under(root / d) == []


def test_an_8bit_sender_is_kept_as_its_bytes(spool: Spool, root: Path) -> None:
    """aiosmtpd hands over non-UTF-8 address bytes as surrogate escapes: the envelope
    stores those bytes and reads them back the same (it once refused them after 250)."""
    env = envelope("x", 3)
    env.sender = "bad\udcffsender@example.org"
    qid = spool.put_sync(env, message("x", 3))
    assert b"bad\xffsender@example.org" in (root / "active" / f"{qid}.env").read_bytes()
    assert spool.load(qid).sender == "bad\udcffsender@example.org"
    assert files_under(root / "tmp") == []


def test_closed_spool_refuses_puts(root: Path) -> None:
    spool = Spool(root)
    spool.close()
    with pytest.raises(QueueError, match="closed"):
        spool.put_sync(envelope("x", 4), message("x", 4))
    with pytest.raises(QueueError, match="closed"):
        asyncio.run(spool.put(envelope("x", 4), message("x", 4)))


# ------------------------------------------------------------------ corrupt envelopes


@pytest.mark.parametrize("garbage", [b'{"sender": "a@b", "recip', b"\xff\xfe", b"[]", b'"x"',
                                     b'{"sender": 1, "recipients": [], "arrival": 0}',
                                     b'{"sender": "a", "recipients": [{"address": "b"}]}'])
def test_corrupt_envelope_moves_to_corrupt(spool: Spool, root: Path, garbage: bytes) -> None:
    qid = spool.put_sync(envelope("k", 1), message("k", 1))
    (root / "active" / f"{qid}.env").write_bytes(garbage)
    with pytest.raises(CorruptEnvelope) as info:
        spool.load(qid)
    assert info.value.moved_to == root / "corrupt" / f"{qid}.env"
    assert info.value.moved_to.read_bytes() == garbage  # kept as it was
    assert (root / "msg" / f"{qid}.msg").read_bytes() == message("k", 1)
    assert spool.ids() == []
    with pytest.raises(UnknownMessage):
        spool.load(qid)


# ------------------------------------------------------------------ recover


def _leftovers(spool: Spool, root: Path) -> tuple[str, str, str]:
    """A good message, a held one with a broken envelope, one with no message file, and
    leftovers of five interrupted writes; returns the three IDs."""
    good = spool.put_sync(envelope("v", 1), message("v", 1))
    broken = spool.put_sync(envelope("v", 2), message("v", 2))
    spool.hold(broken)
    (root / "hold" / f"{broken}.env").write_bytes(b"{not json")
    nomsg = spool.put_sync(envelope("v", 3), message("v", 3))
    (root / "msg" / f"{nomsg}.msg").unlink()
    half = ids.new_id()  # a put: message written, envelope not yet
    (root / "msg" / f"{half}.msg").write_bytes(b"Subject: half\r\n\r\nhal")
    (root / "tmp" / f"{half}.env").write_bytes(b'{"sender": ')
    (root / "tmp" / f"{ids.new_id()}.123.del").write_bytes(b"{}")  # a delete
    (root / "tmp" / f"{good}.99999.1.env").write_bytes(b"{")  # another process's update
    (root / "tmp" / "stray").write_bytes(b"")
    return good, broken, nomsg


def test_recover_alone(root: Path) -> None:
    with Spool(root) as spool:
        good, broken, nomsg = _leftovers(spool, root)
    with Spool(root) as spool:
        report = spool.recover()
        assert report.exclusive
        assert sorted(report.corrupt) == sorted([broken, nomsg])
        assert len(report.removed) == 5 and report.kept == []
        assert files_under(root / "tmp") == []
        assert spool.ids() == [good]
        assert files_under(root / "active") == [f"{good}.env"]
        assert files_under(root / "msg") == sorted([f"{good}.msg", f"{broken}.msg"])
        assert (root / "corrupt" / f"{broken}.env").read_bytes() == b"{not json"
        assert (root / "corrupt" / f"{nomsg}.env").exists()
        assert spool.read_message(good) == message("v", 1)
        assert spool.recover() == type(report)(exclusive=True)  # nothing left to do


def test_recover_keeps_young_leftovers_of_other_processes(root: Path) -> None:
    with Spool(root) as spool:
        _leftovers(spool, root)
    old = root / "tmp" / "old-leftover"
    old.write_bytes(b"")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    holder = child("lock", str(root), stdin=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        with Spool(root) as spool:
            report = spool.recover()
    finally:
        holder.communicate(timeout=30)
    assert not report.exclusive
    assert report.removed == ["tmp/old-leftover"]
    assert len(report.kept) == 5 and len(report.corrupt) == 2
    assert len(files_under(root / "tmp")) == 4


# ------------------------------------------------------------------ reusing files


def test_deleted_files_are_reused(spool: Spool, root: Path) -> None:
    big = spool.put_sync(envelope("z", 299), message("z", 299))  # the largest test message
    inodes = {os.stat(spool.message_path(big)).st_ino, os.stat(spool.envelope_path(big)).st_ino}
    spool.delete(big)
    assert len(os.listdir(root / "free")) == 2
    small = spool.put_sync(envelope("z", 1), message("z", 1))  # shorter: the file shrinks
    assert os.stat(spool.message_path(small)).st_ino in inodes
    assert os.listdir(root / "free") == []
    assert spool.read_message(small) == message("z", 1)
    assert spool.load(small).envid == "z:1"


def test_updates_keep_the_old_envelope_file_for_reuse(spool: Spool, root: Path) -> None:
    qid = spool.put_sync(envelope("z", 2), message("z", 2))
    old = os.stat(spool.envelope_path(qid)).st_ino
    env = spool.load(qid)
    env.recipients[0].deliveries[0].tries = 1
    spool.update(env)
    assert [os.stat(root / "free" / n).st_ino for n in os.listdir(root / "free")] == [old]
    env.recipients[0].deliveries[0].tries = 2
    spool.update(env)  # takes the old file for its new envelope, keeps the one it replaces
    assert os.stat(spool.envelope_path(qid)).st_ino == old
    assert spool.load(qid).recipients[0].deliveries[0].tries == 2


def test_spare_with_a_second_name_is_not_reused(spool: Spool, root: Path) -> None:
    """A crash between linking an old envelope into free/ and replacing it leaves a spare
    that is still a queued envelope: it must never be overwritten."""
    live = spool.put_sync(envelope("z", 3), message("z", 3))
    os.link(spool.envelope_path(live), root / "free" / "crashed.0")
    before = spool.envelope_path(live).read_bytes()
    with Spool(root) as fresh:  # another process: lists free/ for spares
        other = fresh.put_sync(envelope("z", 4), message("z", 4))
    assert spool.envelope_path(live).read_bytes() == before
    assert spool.load(other).envid == "z:4" and spool.load(live).envid == "z:3"
    assert os.stat(spool.envelope_path(live)).st_nlink == 1  # its extra name was dropped


def test_large_files_are_not_kept(spool: Spool, root: Path) -> None:
    qid = spool.put_sync(envelope("z", 5), b"Subject: big\r\n\r\n" + b"x" * 100_000)
    spool.delete(qid)
    assert len(os.listdir(root / "free")) == 1  # the envelope only


def test_recover_drops_doubtful_spares(spool: Spool, root: Path) -> None:
    live = spool.put_sync(envelope("z", 6), message("z", 6))
    os.link(spool.envelope_path(live), root / "free" / "crashed.0")
    (root / "free" / "ok.0").write_bytes(b"old")
    spool.recover()
    assert os.listdir(root / "free") == ["ok.0"]
    assert spool.load(live).envid == "z:6"


def test_missing_message_file_is_quarantined_on_read(spool: Spool, root: Path) -> None:
    qid = spool.put_sync(envelope("m", 1), message("m", 1))
    (root / "msg" / f"{qid}.msg").unlink()
    with pytest.raises(CorruptEnvelope, match="message file is missing"):
        spool.read_message(qid)
    assert spool.ids() == [] and (root / "corrupt" / f"{qid}.env").exists()


def test_modify_under_the_lock(spool: Spool) -> None:
    qid = spool.put_sync(envelope("y", 1), message("y", 1))

    def bump(env: Envelope) -> bool:
        env.recipients[0].deliveries[0].tries += 1
        return True

    threads = [threading.Thread(target=lambda: [spool.modify(qid, bump) for _ in range(10)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert spool.load(qid).recipients[0].deliveries[0].tries == 40  # no update lost
    before = spool.envelope_path(qid).stat().st_ino
    assert spool.modify(qid, lambda env: False).recipients[0].deliveries[0].tries == 40
    assert spool.envelope_path(qid).stat().st_ino == before  # nothing written
