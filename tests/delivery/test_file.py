"""The file courier: mboxrd appends with locking."""

from __future__ import annotations

import asyncio
import mailbox
import re
import subprocess
import sys
import time
from pathlib import Path

from postroom.delivery.file import FileCourier, mbox_entry
from postroom.types import Outcome
from tests.delivery.conftest import MESSAGE, SENDER, make_job

ESCAPES = (b"Subject: escapes\r\n\r\nFrom here on\r\n>From quoted\r\n>>From twice\r\n"
           b" From indented\r\n")


def unescape(body: bytes) -> bytes:
    return re.sub(rb"(?m)^>(>*From )", rb"\1", body)


async def test_two_messages_appended(tmp_path: Path) -> None:
    box = tmp_path / "archive.mbox"
    courier = FileCourier()
    [a] = await courier.deliver(make_job("file", "", [str(box)]))
    assert (a.outcome, a.code, a.status, a.remote) == (Outcome.SENT, 250, "2.0.0", "")
    [b] = await courier.deliver(make_job("file", "", [str(box)], sender="",
                                         message=ESCAPES))
    assert b.outcome is Outcome.SENT
    data = box.read_bytes()
    assert b"\r" not in data
    assert data.startswith(f"From {SENDER} ".encode())
    assert b"\n\nFrom MAILER-DAEMON " in data  # blank line, then the second From_ line
    assert data.endswith(b" From indented\n\n")
    assert b"\n>From the top: this line starts with From.\n" in data
    assert b"\n>From here on\n>>From quoted\n>>>From twice\n" in data
    msgs = list(mailbox.mbox(box, create=False))
    assert [m["Subject"] for m in msgs] == ["courier test", "escapes"]
    assert msgs[0]["Return-Path"] == f"<{SENDER}>"
    assert unescape(msgs[1].get_payload(decode=False).encode()) == \
        b"From here on\n>From quoted\n>>From twice\n From indented\n"
    assert (box.stat().st_mode & 0o777) == 0o600


def test_entry_format() -> None:
    entry = mbox_entry("a b@example.test", b"Subject: x\r\n\r\nno newline at end", when=0)
    first, rest = entry.split(b"\n", 1)
    assert first.startswith(b"From a_b@example.test ")
    assert rest == b"Return-Path: <a b@example.test>\nSubject: x\n\nno newline at end\n\n"


async def test_parallel_appends_do_not_interleave(tmp_path: Path) -> None:
    box = tmp_path / "busy.mbox"
    courier = FileCourier()
    bodies = [(f"Subject: n{i}\r\n\r\n".encode() + (f"line {i}\r\n" * 20000).encode())
              for i in range(12)]
    results = await asyncio.gather(*(courier.deliver(make_job("file", "", [str(box)],
                                                              message=b))
                                     for b in bodies))
    assert all(a.outcome is Outcome.SENT for [a] in results)
    msgs = list(mailbox.mbox(box, create=False))
    assert sorted(m["Subject"] for m in msgs) == sorted(f"n{i}" for i in range(12))
    for m in msgs:
        i = m["Subject"][1:]
        assert m.get_payload() == f"line {i}\n" * 20000


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
os.write(fd, b"From holder Thu Jan  1 00:00:00 2026\\nSubject: holder\\n\\nheld\\n\\n")
os.close(fd)
"""


async def test_lock_is_honoured_across_processes(tmp_path: Path) -> None:
    box = tmp_path / "locked.mbox"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(box), "1.5"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        [a] = await FileCourier(lock_timeout=0.3).deliver(make_job("file", "", [str(box)]))
        assert (a.outcome, a.status) == (Outcome.DEFERRED, "4.2.0")
        started = time.monotonic()
        [b] = await FileCourier().deliver(make_job("file", "", [str(box)]))
        assert b.outcome is Outcome.SENT
        assert time.monotonic() - started > 0.5  # it waited for the holder
    finally:
        holder.wait(10)
    msgs = list(mailbox.mbox(box, create=False))
    assert [m["Subject"] for m in msgs] == ["holder", "courier test"]


async def test_missing_directory_defers_clearly(tmp_path: Path) -> None:
    # an unmounted disk or a directory not made yet: kept, never bounced
    # (tests/delivery/test_missing_dirs.py has the rest)
    target = tmp_path / "nosuch" / "archive.mbox"
    [a] = await FileCourier().deliver(make_job("file", "", [str(target)]))
    assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.3.0")
    assert f"mailbox directory {tmp_path / 'nosuch'} does not exist" in a.text


async def test_directory_and_relative_targets_fail(tmp_path: Path) -> None:
    attempts = await FileCourier().deliver(make_job("file", "", [str(tmp_path), "rel/x"]))
    assert [(a.outcome, a.status) for a in attempts] == [(Outcome.FAILED, "5.2.0")] * 2


async def test_file_without_final_blank_line_gets_one(tmp_path: Path) -> None:
    box = tmp_path / "old.mbox"
    box.write_bytes(b"From x Thu Jan  1 00:00:00 2026\nSubject: old\n\nbody")
    [a] = await FileCourier().deliver(make_job("file", "", [str(box)]))
    assert a.outcome is Outcome.SENT
    assert [m["Subject"] for m in mailbox.mbox(box, create=False)] == ["old", "courier test"]
    assert b"body\n\nFrom " in box.read_bytes()


async def test_message_unchanged_apart_from_line_endings(tmp_path: Path) -> None:
    box = tmp_path / "m.mbox"
    await FileCourier().deliver(make_job("file", "", [str(box)]))
    data = box.read_bytes()
    body = data.split(b"\n", 2)[2]  # after From_ and Return-Path
    assert unescape(body) == MESSAGE.replace(b"\r\n", b"\n") + b"\n"


async def test_append_is_fsynced(tmp_path: Path, fsynced: list[str]) -> None:
    box = tmp_path / "synced.mbox"
    [a] = await FileCourier().deliver(make_job("file", "", [str(box)]))
    assert a.outcome is Outcome.SENT
    assert fsynced == [str(box)]
