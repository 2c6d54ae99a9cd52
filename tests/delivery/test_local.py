"""The local courier: Maildir under SITE/mail/USER."""

from __future__ import annotations

import asyncio
import mailbox
from email import message_from_bytes

from postroom.delivery.local import LocalCourier
from postroom.types import Outcome
from tests.delivery.conftest import MESSAGE, SENDER, SiteFactory, make_job


async def test_delivers_into_new_with_trace_headers(make_site: SiteFactory) -> None:
    site = make_site()
    [a] = await LocalCourier(site).deliver(make_job("local", "", ["rt"]))
    assert (a.outcome, a.code, a.status, a.remote) == (Outcome.SENT, 250, "2.0.0", "")
    box = site.mail_dir / "rt"
    [path] = list((box / "new").iterdir())
    assert list((box / "tmp").iterdir()) == []
    data = path.read_bytes()
    assert data.startswith(f"Return-Path: <{SENDER}>\nDelivered-To: rt@inf.example.ac.uk\n"
                           "Received: ".encode())
    assert b"\r" not in data
    assert data.endswith(MESSAGE.replace(b"\r\n", b"\n"))
    [msg] = list(mailbox.Maildir(box, create=False))
    assert msg["Delivered-To"] == "rt@inf.example.ac.uk"
    assert msg["Subject"] == "courier test"
    assert (path.stat().st_mode & 0o777) == 0o600


async def test_concurrent_deliveries_all_arrive(make_site: SiteFactory) -> None:
    site = make_site()
    courier = LocalCourier(site)
    jobs = [make_job("local", "", ["neilb"],
                     message=MESSAGE.replace(b"courier test", f"number {i}".encode()))
            for i in range(20)]
    results = await asyncio.gather(*(courier.deliver(j) for j in jobs))
    assert all(a.outcome is Outcome.SENT for [a] in results)
    files = list((site.mail_dir / "neilb" / "new").iterdir())
    assert len(files) == 20
    subjects = sorted(message_from_bytes(f.read_bytes())["Subject"] for f in files)
    assert subjects == sorted(f"number {i}" for i in range(20))


async def test_several_users_in_one_job(make_site: SiteFactory) -> None:
    site = make_site()
    attempts = await LocalCourier(site).deliver(make_job("local", "", ["rt", "neilb"]))
    assert [a.outcome for a in attempts] == [Outcome.SENT, Outcome.SENT]
    assert len(list((site.mail_dir / "neilb/new").iterdir())) == 1
    assert b"Delivered-To: neilb@" in next((site.mail_dir / "neilb/new").iterdir()).read_bytes()


async def test_disk_error_defers(make_site: SiteFactory) -> None:
    site = make_site()
    site.mail_dir.mkdir(parents=True, exist_ok=True)
    (site.mail_dir / "rt").write_text("not a directory")
    [a] = await LocalCourier(site).deliver(make_job("local", "", ["rt"]))
    assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.3.0")
    assert "mailbox rt" in a.text


async def test_unsafe_mailbox_name_fails(make_site: SiteFactory) -> None:
    site = make_site()
    attempts = await LocalCourier(site).deliver(make_job("local", "", ["../etc", ".hidden"]))
    assert [(a.outcome, a.status) for a in attempts] == [(Outcome.FAILED, "5.1.3")] * 2
    assert not (site.home / "etc").exists()


async def test_file_and_new_directory_are_fsynced(make_site: SiteFactory,
                                                  fsynced: list[str]) -> None:
    site = make_site()
    [a] = await LocalCourier(site).deliver(make_job("local", "", ["rt"]))
    assert a.outcome is Outcome.SENT
    [path] = list((site.mail_dir / "rt" / "new").iterdir())
    box = site.mail_dir / "rt"
    assert str(box / "tmp" / path.name) in fsynced  # the data, before the rename
    assert fsynced[-1] == str(box / "new")  # the rename, last, before SENT


def test_maildir_names_of_one_second_sort_in_delivery_order(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A reader that lists new/ by name (most do) sees the mail in the order it came."""
    from postroom.delivery import local

    names = []
    for now in (1000.05, 1000.5, 1000.999999):
        monkeypatch.setattr(local.time, "time", lambda now=now: now)
        names.append(local._unique_name(10))
    assert sorted(names) == names
