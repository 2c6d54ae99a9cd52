"""The queue runner with real couriers and real SMTP peers on 127.0.0.1, and a clock the
tests move, so the 5-day lifetime and the 4-hour warning are tested without waiting."""

from __future__ import annotations

import asyncio
import email
import email.policy
import fcntl
import mailbox
import os
import threading
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from postroom import runtime
from postroom.delivery import aclose_all, couriers_for
from postroom.envelope import RcptState
from postroom.queue import accept
from postroom.queue.spool import Spool
from postroom.runner import QueueRunner
from tests.sinks import Sink

MSG = (b"From: rt@inf.example.ac.uk\r\nTo: neilb@inf.example.ac.uk\r\nSubject: hello\r\n"
       b"Message-ID: <m1@inf.example.ac.uk>\r\n\r\nHello there.\r\n")
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Rig:
    """Site + spool + runner + a sink standing for staffmail's SMTP server."""

    def __init__(self, site: Path, sink: Sink) -> None:
        self.site, self.sink, self.clock = site, sink, Clock()
        self.rt = runtime.build(site)
        self.spool = Spool(self.rt.site.queue_dir)
        self.couriers = couriers_for(self.rt.site)
        reloader = runtime.Reloader(site)
        self.runner = QueueRunner(reloader, self.spool, self.couriers, clock=self.clock)

    async def queue(self, sender: str, rcpts: list[str], data: bytes = MSG,
                    **fields: object) -> str:
        recipients = []
        for r in rcpts:
            notify = fields.pop("notify", None)
            recipients.append(accept.make_recipient(
                r, self.runner.reloader.current.resolver.resolve(r).routes,
                notify=notify))  # type: ignore[arg-type]
        env = accept.new_envelope(sender, recipients, **fields)
        env.arrival = self.clock.now
        return await self.spool.put(env, data)

    async def run(self) -> None:
        await self.runner.drain()

    def maildir(self, user: str) -> list[EmailMessage]:
        box = mailbox.Maildir(self.site / "mail" / user, create=False)
        return [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default)
                for k in sorted(box.keys())]  # type: ignore[misc]

    def log(self) -> str:
        return (self.site / "log/mail.log").read_text()


@pytest.fixture
async def rig(example_site: Path) -> AsyncIterator[Rig]:
    from postroom import maillog

    sink = await Sink().start()
    mt = example_site / "maps/mailertable"
    mt.write_text(mt.read_text().replace("esmtp:[127.0.0.1]:2526",  # staffmail's line
                                         f"esmtp:[127.0.0.1]:{sink.port}", 1))
    with open(example_site / "maps/aliases", "a") as f:
        f.write(f'tee-test: "|/bin/sh -c \'cat > {example_site}/prog.out\'"\n')
    maillog.open_log(example_site / "log/mail.log", "mail.inf.example.ac.uk")
    r = Rig(example_site, sink)
    yield r
    await aclose_all(r.couriers)
    await r.spool.aclose()
    await sink.stop()
    maillog.close_log()


def dsn_parts(msg: EmailMessage) -> tuple[str, list[dict[str, str]], EmailMessage]:
    """(human text, per-recipient delivery-status fields, third part) of a DSN."""
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    human, status, original = msg.get_payload()  # type: ignore[misc]
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    fields = [dict(b.items()) for b in blocks[1:]]
    assert "Reporting-MTA" in dict(blocks[0].items())
    return human.get_content(), fields, original


async def test_end_to_end_routes(rig: Rig) -> None:
    qid = await rig.queue("rt@inf.example.ac.uk",
                          ["neilb@inf.example.ac.uk", "rt@inf.example.ac.uk",
                           "tee-test@inf.example.ac.uk", "mchen@cogsci.example.ac.uk"])
    await rig.run()
    got = sorted(r for m in rig.sink.messages for r in m.rcpt_tos)
    assert got == ["mchen@staffmail.example.ac.uk", "neilb@staffmail.example.ac.uk"]
    assert rig.sink.messages[0].content.endswith(MSG)
    (local,) = rig.maildir("rt")
    assert local["Subject"] == "hello" and local["Delivered-To"] == "rt@inf.example.ac.uk"
    assert (rig.site / "prog.out").read_bytes().endswith(MSG.replace(b"\r\n", b"\n")) \
        or (rig.site / "prog.out").read_bytes().endswith(MSG)
    assert rig.spool.ids() == []
    log = rig.log()
    assert f"{qid}: to=<neilb@staffmail.example.ac.uk>, orig_to=<neilb@inf.example.ac.uk>, " \
           "mailer=esmtp, relay=" in log
    assert "stat=Sent (250 " in log


async def test_tempfail_is_retried_on_schedule(rig: Rig) -> None:
    rig.sink.tempfail_rcpt = 1
    qid = await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    await rig.run()
    (d,) = rig.spool.load(qid).deliveries
    assert (d.state, d.tries, d.status) == (RcptState.DEFERRED, 1, "4.3.0")
    assert 270 <= d.next_attempt - T0 <= 330  # 5 minutes, give or take the jitter
    assert "stat=Deferred: 451 4.3.0" in rig.log()
    rig.clock.now += 200
    await rig.run()
    assert rig.spool.load(qid).deliveries[0].tries == 1  # not due yet
    rig.clock.now += 200
    await rig.run()
    assert rig.spool.ids() == []
    assert [m.rcpt_tos for m in rig.sink.messages] == [["neilb@staffmail.example.ac.uk"]]


async def test_permanent_failure_bounces_with_rfc3464_dsn(rig: Rig) -> None:
    rig.sink.reject_rcpt = {"neilb@staffmail.example.ac.uk"}
    qid = await rig.queue("rt@inf.example.ac.uk",
                          ["neilb@inf.example.ac.uk", "jsmith@inf.example.ac.uk"],
                          envid="ENV123")
    await rig.run()
    assert [m.rcpt_tos for m in rig.sink.messages] == [["jsmith@staffmail.example.ac.uk"]]
    (bounce,) = rig.maildir("rt")
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    assert bounce["From"].startswith("Mail Delivery System <MAILER-DAEMON@")
    human, fields, original = dsn_parts(bounce)
    assert "could not be delivered" in " ".join(human.split())
    assert "neilb@staffmail.example.ac.uk" in human
    (f,) = fields  # only the failed recipient
    assert f["Final-Recipient"] == "rfc822; neilb@staffmail.example.ac.uk"
    assert f["Action"] == "failed" and f["Status"] == "5.1.1"
    assert f["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    assert f["Remote-MTA"] == "dns; 127.0.0.1"
    assert original.get_content_type() == "message/rfc822"
    assert original.get_payload()[0]["Subject"] == "hello"
    assert rig.spool.ids() == []
    assert f"{qid}: sender notify: failed" in rig.log()


async def test_retry_follows_a_forward_changed_meanwhile(rig: Rig) -> None:
    """Routing happens again at delivery time: neilb's mailbox moved here while his mail
    waited, so the retry goes to the new place and staffmail is not tried again."""
    rig.sink.tempfail_rcpt = 1
    qid = await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    await rig.run()
    assert rig.spool.load(qid).deliveries[0].state is RcptState.DEFERRED
    forwards = rig.site / "maps/forwards"
    forwards.write_text(forwards.read_text().replace(
        "neilb:      neilb@staffmail.example.ac.uk", "neilb:      rt"))
    assert rig.runner.reloader.reload(), rig.runner.reloader.last_error
    rig.clock.now += 400
    await rig.run()
    (moved,) = rig.maildir("rt")
    assert moved["Subject"] == "hello"
    assert rig.sink.messages == [] and rig.sink.rcpt_commands == 1
    assert rig.spool.ids() == []
    assert (f"{qid}: <neilb@inf.example.ac.uk> rerouted by the current maps: "
            "esmtp:neilb@staffmail.example.ac.uk -> local:rt") in rig.log()


async def test_reroute_never_repeats_a_delivery_already_made(rig: Rig) -> None:
    """An alias to two targets: one got the mail, the other is deferred. A map change that
    sends the first target's mail another way (esmtp -> relay) must not send it again."""
    with open(rig.site / "maps/aliases", "a") as f:
        f.write('dual: neilb, "|/bin/sh -c \'exit 75\'"\n')
    assert rig.runner.reloader.reload(), rig.runner.reloader.last_error
    qid = await rig.queue("rt@inf.example.ac.uk", ["dual@inf.example.ac.uk"])
    await rig.run()
    states = sorted((d.mailer, d.state) for d in rig.spool.load(qid).deliveries)
    assert states == [("esmtp", RcptState.SENT), ("prog", RcptState.DEFERRED)]
    mt = rig.site / "maps/mailertable"
    mt.write_text(mt.read_text().replace(f"esmtp:[127.0.0.1]:{rig.sink.port}",
                                         f"relay:[127.0.0.1]:{rig.sink.port}"))
    assert rig.runner.reloader.reload(), rig.runner.reloader.last_error
    rig.clock.now += 400
    await rig.run()
    assert len(rig.sink.messages) == 1
    (prog,) = [d for d in rig.spool.load(qid).deliveries if d.mailer == "prog"]
    assert prog.tries == 2  # its history kept


async def test_retry_keeps_its_routes_when_the_maps_now_refuse(rig: Rig) -> None:
    """A map edit that drops the user must not bounce mail already accepted."""
    rig.sink.tempfail_rcpt = 1
    await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    await rig.run()
    forwards = rig.site / "maps/forwards"
    forwards.write_text(forwards.read_text().replace(
        "neilb:      neilb@staffmail.example.ac.uk\n", ""))
    assert rig.runner.reloader.reload(), rig.runner.reloader.last_error
    assert not rig.runner.reloader.current.resolver.resolve("neilb").deliverable
    rig.clock.now += 400
    await rig.run()
    assert [m.rcpt_tos for m in rig.sink.messages] == [["neilb@staffmail.example.ac.uk"]]
    assert rig.spool.ids() == []


async def test_removal_waits_for_a_locked_message_off_the_event_loop(rig: Rig) -> None:
    """A queue command holding the message's lock (as ``postroom queue hold`` does for a
    moment) must not stop the event loop, which serves SMTP sessions too."""
    qid = await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    fd = os.open(rig.spool.message_path(qid), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    threading.Timer(0.5, os.close, (fd,)).start()  # the command finishes after 0.5 s
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.ensure_future(ticker())
    await rig.run()
    beat.cancel()
    assert rig.spool.ids() == [] and len(rig.sink.messages) == 1
    assert ticks >= 20, ticks  # the loop kept running while the removal waited (~50)


async def test_bounce_while_a_delivery_round_runs_is_not_undone(rig: Rig) -> None:
    """``postroom queue bounce`` while the runner waits on the remote server: the round's
    write-back keeps the bounce, and the DSN goes out."""
    qid = ""
    real_rcpt = rig.sink.handle_RCPT

    async def slow_rcpt(*args: object) -> str:
        rig.spool.modify(qid, lambda env: env.return_to_sender("returned by the postmaster") > 0)
        await real_rcpt(*args)  # type: ignore[arg-type]
        return "451 4.3.0 Try again later"

    rig.sink.handle_RCPT = slow_rcpt  # type: ignore[method-assign]
    qid = await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    await rig.run()
    (bounce,) = rig.maildir("rt")
    _, (f,), _ = dsn_parts(bounce)
    assert (f["Action"], f["Status"]) == ("failed", "5.0.0")
    assert rig.spool.ids() == []


_HOLD_CLAIM = """
import sys
from postroom.runner.claims import Claims
claims = Claims(sys.argv[1])
assert claims.reserve(sys.argv[2])
print("held", flush=True)
sys.stdin.read()
"""


async def test_a_message_claimed_elsewhere_is_left_alone_until_its_owner_dies(
        rig: Rig) -> None:
    """Ownership is stated by a claim, not guessed from age: a scan leaves a message
    another process has claimed, and takes it over the moment that process dies."""
    import subprocess
    import sys

    qid = await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    owner = subprocess.Popen([sys.executable, "-c", _HOLD_CLAIM, str(rig.spool.root), qid],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert owner.stdout is not None and owner.stdout.readline() == b"held\n"
        await rig.run()
        assert rig.spool.ids() == [qid] and rig.sink.messages == []
    finally:
        owner.kill()
        owner.wait()
    rig.runner.rescan()
    rig.runner.due[qid] = 0.0
    await rig.run()
    assert rig.spool.ids() == [] and len(rig.sink.messages) == 1


async def test_inject_delivers_at_once_from_memory(rig: Rig) -> None:
    recipient = accept.make_recipient(
        "neilb@inf.example.ac.uk",
        rig.runner.reloader.current.resolver.resolve("neilb@inf.example.ac.uk").routes)
    env = accept.new_envelope("rt@inf.example.ac.uk", [recipient])
    env.arrival = rig.clock.now
    qid = await rig.runner.inject(env, MSG)
    assert qid in rig.runner.claims.reserved  # visible on disk, but owned by us
    await asyncio.gather(*rig.runner._start([qid], rig.clock.now))
    assert rig.spool.ids() == [] and len(rig.sink.messages) == 1
    assert rig.runner.claims.reserved == set()


async def test_flush_of_one_message_retries_that_message_only(rig: Rig) -> None:
    rig.sink.tempfail_rcpt = 2
    first = await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    second = await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    await rig.run()
    assert sorted(rig.spool.ids()) == sorted([first, second])
    rig.runner.flush(second)
    await asyncio.gather(*rig.runner._start([first, second], rig.clock.now))
    assert rig.spool.ids() == [first] and len(rig.sink.messages) == 1


async def test_returned_by_the_postmaster(rig: Rig) -> None:
    """``postroom queue bounce``: a deferred message goes back to its sender at once."""
    rig.sink.tempfail_rcpt = 1
    qid = await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    await rig.run()
    assert rig.spool.load(qid).deliveries[0].state is RcptState.DEFERRED
    rig.spool.modify(qid, lambda env: env.return_to_sender("returned by the postmaster") > 0)
    rig.runner.flush(qid)  # what `postroom queue bounce ID` asks of the server
    await rig.run()
    (bounce,) = rig.maildir("rt")
    _, (f,), _ = dsn_parts(bounce)
    assert (f["Action"], f["Status"]) == ("failed", "5.0.0")
    assert f["Diagnostic-Code"] == "x-postroom; returned by the postmaster"
    assert rig.spool.ids() == [] and rig.sink.messages == []


async def test_ret_hdrs_returns_headers_only(rig: Rig) -> None:
    rig.sink.reject_rcpt = {"neilb@staffmail.example.ac.uk"}
    await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"], ret="HDRS")
    await rig.run()
    (bounce,) = rig.maildir("rt")
    _, _, original = dsn_parts(bounce)
    assert original.get_content_type() == "text/rfc822-headers"
    assert b"Hello there" not in bounce.as_bytes()


async def test_delay_warning_then_expiry_after_five_days(rig: Rig, closed_port: int) -> None:
    mt = rig.site / "maps/mailertable"
    mt.write_text(mt.read_text().replace(f"[127.0.0.1]:{rig.sink.port}",
                                         f"[127.0.0.1]:{closed_port}"))
    assert rig.runner.reloader.reload()
    qid = await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    await rig.run()
    (d,) = rig.spool.load(qid).deliveries
    assert d.state is RcptState.DEFERRED and d.status == "4.4.1"
    for hours in (1, 2, 3):
        rig.clock.now = T0 + hours * 3600
        await rig.run()
    assert not (rig.site / "mail/rt").exists()  # no warning before 4 hours
    rig.clock.now = T0 + 4 * 3600 + 60
    await rig.run()
    (warning,) = rig.maildir("rt")
    assert warning["Subject"] == "Delayed Mail (still being retried)"
    _, (f,), headers = dsn_parts(warning)
    assert f["Action"] == "delayed" and f["Status"].startswith("4.")
    assert "Will-Retry-Until" in f
    assert headers.get_content_type() == "text/rfc822-headers"
    rig.clock.now = T0 + 2 * 86400
    await rig.run()
    assert len(rig.maildir("rt")) == 1  # warned once
    assert rig.spool.ids() == [qid]
    rig.clock.now = T0 + 5 * 86400 + 1
    await rig.run()
    bounce = rig.maildir("rt")[1]
    _, (f,), _ = dsn_parts(bounce)
    assert f["Action"] == "failed" and f["Status"] == "4.4.7"
    assert "delivery time expired after 5 days" in f["Diagnostic-Code"]
    assert rig.spool.ids() == []


async def test_notify_never_and_success(rig: Rig) -> None:
    rig.sink.reject_rcpt = {"neilb@staffmail.example.ac.uk"}
    await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"], notify=["NEVER"])
    await rig.queue("rt@inf.example.ac.uk", ["jsmith@inf.example.ac.uk"],
                    notify=["SUCCESS"])
    await rig.run()
    (notice,) = rig.maildir("rt")  # no bounce for NEVER; a success notice for SUCCESS
    assert notice["Subject"] == "Successful Mail Delivery Report"
    _, (f,), _ = dsn_parts(notice)
    assert f["Action"] == "relayed" and f["Status"] == "2.0.0"


async def test_null_sender_never_bounces_but_postmaster_hears(rig: Rig) -> None:
    rig.sink.reject_rcpt = {"neilb@staffmail.example.ac.uk",
                            "jsmith@staffmail.example.ac.uk"}
    await rig.queue("", ["neilb@inf.example.ac.uk"])
    await rig.run()
    # postmaster -> root -> \root (local) + sysman (neilb, jsmith: both refused)
    (double,) = rig.maildir("root")
    assert double["Subject"] == "Undelivered Mail Returned to Sender"
    assert double["To"].addresses[0].addr_spec == "postmaster@inf.example.ac.uk"
    assert "double bounce undeliverable, discarded" in rig.log()  # no loop
    assert rig.spool.ids() == []


async def test_quiescent_runner_delivers_nothing(rig: Rig) -> None:
    (rig.site / "state").mkdir(exist_ok=True)
    (rig.site / "state/quiescent").write_text("restore\n")
    qid = await rig.queue("rt@inf.example.ac.uk", ["rt@inf.example.ac.uk"])
    assert await rig.runner.run_once() == []
    assert rig.spool.ids() == [qid]
    os.unlink(rig.site / "state/quiescent")
    await rig.run()
    assert rig.spool.ids() == []


async def test_schedule_survives_restart(rig: Rig) -> None:
    rig.sink.tempfail_rcpt = 1
    qid = await rig.queue("rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    await rig.run()
    tried = rig.sink.transactions
    fresh = QueueRunner(runtime.Reloader(rig.site), rig.spool, rig.couriers, clock=rig.clock)
    rig.clock.now += 60
    await fresh.drain()
    assert rig.spool.load(qid).deliveries[0].tries == 1  # the stored schedule is kept
    assert rig.sink.transactions == tried
    rig.clock.now += 600
    await fresh.drain()
    assert rig.spool.ids() == []


async def test_a_bounce_for_a_sender_with_no_route_goes_to_the_postmaster(rig: Rig) -> None:
    """A DSN that cannot reach its sender (no such user here) is never dropped: the
    postmaster gets it, and the log says why."""
    rig.sink.reject_rcpt = {"neilb@staffmail.example.ac.uk"}
    await rig.queue("nosuch@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
    await rig.run()
    (bounce,) = rig.maildir("root")  # postmaster -> root -> \root
    assert bounce["To"].addresses[0].addr_spec == "postmaster@inf.example.ac.uk"
    _, (f,), _ = dsn_parts(bounce)
    assert f["Action"] == "failed"
    assert "DSN to <nosuch@inf.example.ac.uk> has no deliverable route" in rig.log()
    assert "sent to the postmaster" in rig.log()
