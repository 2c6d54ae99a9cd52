"""A missing directory for a Maildir or a file target (an unmounted disk, an operator's
slip) keeps the mail: DEFERRED naming the directory, a ``warning:`` line in the mail log,
never a bounce; once the directory is back the next attempt is SENT."""

from __future__ import annotations

import mailbox
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from postroom import maillog, runtime
from postroom.delivery import aclose_all, couriers_for
from postroom.delivery.file import FileCourier
from postroom.delivery.local import LocalCourier
from postroom.envelope import RcptState
from postroom.queue import accept
from postroom.queue.spool import Spool
from postroom.runner import QueueRunner
from postroom.site import Site
from postroom.types import Outcome
from tests.delivery.conftest import SiteFactory, make_job

MSG = (b"From: neilb@inf.example.ac.uk\r\nTo: rt@inf.example.ac.uk\r\nSubject: kept\r\n"
       b"Message-ID: <kept@inf.example.ac.uk>\r\n\r\nStill here.\r\n")


@pytest.fixture
def mail_log(example_site: Path) -> Iterator[Path]:
    path = example_site / "log/mail.log"
    maillog.open_log(path, "mail.inf.example.ac.uk")
    yield path
    maillog.close_log()


def warnings_in(log: Path) -> list[str]:
    return [line.split(": ", 1)[1] for line in log.read_text().splitlines()
            if ": warning: " in line]


async def test_missing_mail_directory_defers_then_delivers(make_site: SiteFactory,
                                                           mail_log: Path) -> None:
    site = make_site()
    shutil.rmtree(site.mail_dir)  # say, the disk is not mounted
    courier = LocalCourier(site)
    [a] = await courier.deliver(make_job("local", "", ["rt"], queue_id="QID1"))
    assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.3.0")
    assert a.text == f"mailbox directory {site.mail_dir} does not exist"
    assert not site.mail_dir.exists()  # not made behind the operator's back
    [warning] = warnings_in(mail_log)
    assert warning.startswith(f"warning: QID1: maildir delivery to rt deferred: "
                              f"mailbox directory {site.mail_dir} does not exist")

    site.mail_dir.mkdir()  # mounted again
    [b] = await courier.deliver(make_job("local", "", ["rt"], queue_id="QID1"))
    assert b.outcome is Outcome.SENT
    assert [m["Subject"] for m in mailbox.Maildir(site.mail_dir / "rt", create=False)] == \
        ["courier test"]
    assert len(warnings_in(mail_log)) == 1


async def test_a_new_users_maildir_is_still_made(make_site: SiteFactory) -> None:
    site = make_site()
    assert not (site.mail_dir / "newbie").exists()
    [a] = await LocalCourier(site).deliver(make_job("local", "", ["newbie"]))
    assert a.outcome is Outcome.SENT
    assert all((site.mail_dir / "newbie" / sub).is_dir() for sub in ("tmp", "new", "cur"))


async def test_missing_file_directory_defers_then_delivers(tmp_path: Path,
                                                           mail_log: Path) -> None:
    target = tmp_path / "archive" / "list.mbox"
    courier = FileCourier()
    [a] = await courier.deliver(make_job("file", "", [str(target)], queue_id="QID2"))
    assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.3.0")
    assert f"mailbox directory {target.parent} does not exist" in a.text
    assert str(target) in a.text
    [warning] = warnings_in(mail_log)
    assert warning.startswith(f"warning: QID2: file delivery deferred: mailbox directory "
                              f"{target.parent} does not exist")

    target.parent.mkdir()
    [b] = await courier.deliver(make_job("file", "", [str(target)], queue_id="QID2"))
    assert b.outcome is Outcome.SENT
    assert [m["Subject"] for m in mailbox.mbox(target, create=False)] == ["courier test"]


async def test_a_parent_that_is_a_file_defers_too(tmp_path: Path, mail_log: Path) -> None:
    (tmp_path / "mnt").write_text("not a directory")
    target = tmp_path / "mnt" / "list.mbox"
    [a] = await FileCourier().deliver(make_job("file", "", [str(target)]))
    assert (a.outcome, a.status) == (Outcome.DEFERRED, "4.3.0")
    assert f"mailbox directory {target.parent} does not exist" in a.text


# -- through the queue runner: the message stays queued, no DSN, then it is delivered

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def runner(example_site: Path, mail_log: Path
                 ) -> AsyncIterator[tuple[QueueRunner, Spool, Clock, Site]]:
    with open(example_site / "maps/aliases", "a") as f:
        f.write(f"archive-test: {example_site}/mail/archive-test.mbox\n")
    rt = runtime.build(example_site)
    spool = Spool(rt.site.queue_dir)
    couriers = couriers_for(rt.site)
    clock = Clock()
    qr = QueueRunner(runtime.Reloader(example_site), spool, couriers, clock=clock)
    yield qr, spool, clock, rt.site
    await aclose_all(couriers)
    await spool.aclose()


async def test_runner_keeps_the_mail_until_the_directory_is_back(
        runner: tuple[QueueRunner, Spool, Clock, Site], mail_log: Path) -> None:
    qr, spool, clock, site = runner
    # rt is a local user (Maildir); archive-test appends to SITE/mail/archive-test.mbox
    rcpts = ["rt@inf.example.ac.uk", "archive-test@inf.example.ac.uk"]
    recipients = [accept.make_recipient(r, qr.reloader.current.resolver.resolve(r).routes)
                  for r in rcpts]
    assert sorted(d.mailer for r in recipients for d in r.deliveries) == ["file", "local"]
    env = accept.new_envelope("neilb@inf.example.ac.uk", recipients)
    env.arrival = clock.now
    shutil.rmtree(site.mail_dir)
    qid = await spool.put(env, MSG)

    await qr.drain()
    assert spool.ids() == [qid]  # still queued, and no DSN was queued beside it
    states = {d.mailer: (d.state, d.status) for d in spool.load(qid).deliveries}
    assert states == {"local": (RcptState.DEFERRED, "4.3.0"),
                      "file": (RcptState.DEFERRED, "4.3.0")}
    log = mail_log.read_text()
    assert f"stat=Deferred: 451 4.3.0 mailbox directory {site.mail_dir} does not exist" in log
    assert "stat=Bounced" not in log
    assert len(warnings_in(mail_log)) == 2
    assert all(str(site.mail_dir) in w for w in warnings_in(mail_log))

    site.mail_dir.mkdir()
    clock.now += 3600
    await qr.drain()
    assert spool.ids() == []
    assert [m["Subject"] for m in mailbox.Maildir(site.mail_dir / "rt", create=False)] == \
        ["kept"]
    assert [m["Subject"] for m in mailbox.mbox(site.mail_dir / "archive-test.mbox",
                                               create=False)] == ["kept"]
    assert mail_log.read_text().count("stat=Sent") == 2
