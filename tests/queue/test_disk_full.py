"""A full disk under the queue (issue 10, item 5), on a real small file system: a
loop-mounted ext4 image, or a tmpfs with ``size=`` where the kernel has no loop devices.
Through a real ``postroom serve``: intake answers ``452 4.3.1`` and never 250 for a
message not on disk, the mail log says why, what was queued stays whole, delivery rounds
on the full disk lose nothing, and intake takes mail again once there is room.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import smtplib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import run
from tests.server import RELAY_IP, Server, configure_site

FS_SIZE_MB = 24
MESSAGE_BYTES = 300 * 1024
ACCEPTED = 250
INSUFFICIENT_STORAGE = (452, b"4.3.1 Insufficient system storage")
BODY_LINE = b"y" * 76 + b"\r\n"
RCPT = "someone@elsewhere.example"  # deferred: the test site's MX port refuses


def _mount(kind: str, image: Path, where: Path) -> bool:
    if kind == "loop":
        steps = [["truncate", "-s", f"{FS_SIZE_MB}M", str(image)],
                 ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)],
                 ["mount", "-o", "loop", str(image), str(where)]]
    else:
        steps = [["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE_MB}M,mode=0700", "tmpfs",
                  str(where)]]
    return all(subprocess.run(argv, capture_output=True).returncode == 0 for argv in steps)


@pytest.fixture
def small_queue(example_site: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The example site with its ``queue/`` on a file system of its own; yields the
    site and which kind of file system it is."""
    yield from _small(example_site, "queue", tmp_path)


@pytest.fixture
def small_mail(example_site: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """... with its ``mail/`` (the Maildirs) on a file system of its own."""
    yield from _small(example_site, "mail", tmp_path)


def _small(site: Path, part: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    example_site = site
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    where = example_site / part
    where.mkdir(exist_ok=True)
    kind = ""
    if shutil.which("mkfs.ext4") and subprocess.run(["losetup", "-f"],
                                                    capture_output=True).returncode == 0:
        kind = "loop" if _mount("loop", tmp_path / f"{part}.img", where) else ""
    if not kind:
        kind = "tmpfs" if _mount("tmpfs", tmp_path / "unused", where) else ""
    if not kind:
        pytest.skip("neither a loop-mounted image nor a tmpfs can be mounted here")
    try:
        yield example_site, kind
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(site: Path, leave: int, part: str = "queue") -> Path:
    """A ballast file that leaves about ``leave`` bytes free on the disk of ``part``."""
    ballast = site / part / "ballast"
    st = os.statvfs(ballast.parent)
    with open(ballast, "wb") as f:
        size = max(0, st.f_bavail * st.f_frsize - leave)
        while size > 0:
            chunk = min(size, 1 << 20)
            f.write(b"\0" * chunk)
            size -= chunk
        f.flush()
        os.fsync(f.fileno())
    return ballast


def top_up(site: Path, part: str = "queue") -> Path:
    """Fill what is left of the disk of ``part``, to the last block."""
    path = site / part / "ballast2"
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return path


def message(token: str) -> bytes:
    body = (f"token {token}\r\n".encode() + b"x" * 76 + b"\r\n") * (MESSAGE_BYTES // 100)
    return f"From: a@inf.example.ac.uk\r\nTo: {RCPT}\r\nSubject: {token}\r\n\r\n".encode() + body


def send(port: int, token: str) -> tuple[int, bytes]:
    """The reply to the end of DATA (or to MAIL, if MAIL is refused)."""
    with smtplib.SMTP("127.0.0.1", port, source_address=(RELAY_IP, 0), timeout=30) as c:
        c.ehlo("client.example")
        code, text = c.mail("a@inf.example.ac.uk")
        if code != ACCEPTED:
            return code, text
        assert c.rcpt(RCPT)[0] == ACCEPTED
        return c.data(message(token))


def queued(site: Path) -> dict[str, str]:
    """queue ID -> token, for every message the queue holds, read back from disk; every
    envelope must parse and every message must be whole."""
    q = site / "queue"
    found: dict[str, str] = {}
    for env_path in (q / "active").glob("*.env"):
        qid = env_path.name[:-4]
        env = json.loads(env_path.read_text())
        assert [r["address"] for r in env["recipients"]] == [RCPT]
        data = (q / "msg" / f"{qid}.msg").read_bytes()
        token = data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
        assert data.endswith(message(token)), f"{qid}: message not whole"
        found[qid] = token
    return found


def serve(site: Path, ca: trustme.CA, workers: int, min_free: str) -> Server:
    configure_site(site, ca)
    profile = site / "postroom.toml"
    # retries every second or two: delivery rounds run on the full disk too
    text = profile.read_text().replace("[queue]\n", f"[queue]\nmin_free = {min_free}\n"
                                       'retry_initial = "1s"\nretry_max = "2s"\n', 1)
    profile.write_text(text)
    return Server(site, workers).start()


def in_log(server: Server, text: str, timeout: float = 5) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in server.log().splitlines():
            if text in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the mail log:\n{server.log()}")


@pytest.mark.parametrize("workers", [1, 2], ids=["workers1", "workers2"])
def test_a_full_disk_is_452_loses_nothing_and_recovers(small_queue: tuple[Path, str],
                                                       workers: int) -> None:
    site, kind = small_queue
    print(f"\nqueue on a {FS_SIZE_MB} MB {kind} file system")
    server = serve(site, trustme.CA(), workers, min_free="0")  # the disk really fills
    try:
        ballast = fill(site, leave=3 << 20)
        port = server.ports["mx"]
        accepted: dict[str, str] = {}   # queue ID -> token
        refused = 0
        for _ in range(40):
            token = uuid.uuid4().hex
            code, text = send(port, token)
            if code == ACCEPTED:
                accepted[text.split()[-1].decode()] = token
                continue
            assert (code, text) == INSUFFICIENT_STORAGE
            refused += 1
            if refused == 5:
                break
        assert accepted and refused == 5, (accepted, refused)
        line = in_log(server, "queue write failed: cannot queue message:")
        assert "No space left on device" in line
        # delivery rounds on the full disk: each ends deferred and rewrites its envelope
        last = top_up(site)
        in_log(server, "delivery round not recorded", timeout=15)  # retried every 1-2 s
        time.sleep(1)
        assert server.proc is not None and server.proc.poll() is None
        assert queued(site) == accepted
        last.unlink()
        assert not list((site / "queue" / "corrupt").iterdir())
        ballast.unlink()  # room again: taken at once, no restart
        token = uuid.uuid4().hex
        code, text = send(port, token)
        assert code == ACCEPTED, text
        accepted[text.split()[-1].decode()] = token
        assert queued(site) == accepted
    finally:
        assert server.stop() == 0
    output = "".join(server.output)
    assert "Traceback" not in output, output
    # nothing half-written is left: every message file has its envelope, tmp/ is empty
    q = site / "queue"
    assert {p.name[:-4] for p in (q / "msg").glob("*.msg")} == set(accepted)
    assert not [p for p in (q / "tmp").iterdir() if p.is_file()]
    listing = run("queue", site=site)
    assert all(qid in listing.stdout for qid in accepted), listing.stdout


def test_min_free_refuses_at_mail_and_recovers(small_queue: tuple[Path, str]) -> None:
    site, _ = small_queue
    server = serve(site, trustme.CA(), 1, min_free=str(8 << 20))
    try:
        port = server.ports["mx"]
        assert send(port, "roomy")[0] == ACCEPTED
        ballast = fill(site, leave=4 << 20)
        time.sleep(1.1)  # free space is looked at once a second
        with smtplib.SMTP("127.0.0.1", port, source_address=(RELAY_IP, 0), timeout=30) as c:
            c.ehlo("client.example")
            assert c.mail("a@inf.example.ac.uk") == INSUFFICIENT_STORAGE
        line = in_log(server, "reject: MAIL from client.example [127.0.0.3]: 452 4.3.1")
        assert "queue.min_free is 8.0 MiB" in line
        ballast.unlink()
        fill(site, leave=12 << 20)
        time.sleep(1.1)
        # room for min_free, but not for the size the client declares
        with smtplib.SMTP("127.0.0.1", port, source_address=(RELAY_IP, 0), timeout=30) as c:
            c.ehlo("client.example")
            assert c.mail("a@inf.example.ac.uk", [f"SIZE={6 << 20}"]) == INSUFFICIENT_STORAGE
            assert c.rset()[0] == ACCEPTED
            assert c.mail("a@inf.example.ac.uk", ["SIZE=1000"])[0] == ACCEPTED
        in_log(server, "message of 6.0 MiB declared")
        assert send(port, "again")[0] == ACCEPTED
    finally:
        assert server.stop() == 0


def test_a_full_maildir_disk_defers_and_delivers_later(small_mail: tuple[Path, str]) -> None:
    """The Maildir courier on a full disk: deferred (never bounced), kept in the queue,
    delivered once there is room."""
    site, _ = small_mail
    server = serve(site, trustme.CA(), 1, min_free="0")
    try:
        ballast = top_up(site, part="mail")
        with smtplib.SMTP("127.0.0.1", server.ports["mx"], source_address=(RELAY_IP, 0),
                          timeout=30) as c:
            c.ehlo("client.example")
            c.mail("a@inf.example.ac.uk")
            assert c.rcpt("rt@inf.example.ac.uk")[0] == ACCEPTED
            code, text = c.data(b"Subject: to rt\r\n\r\n" + BODY_LINE * 2000)
        assert code == ACCEPTED, text
        qid = text.split()[-1].decode()
        line = in_log(server, f"{qid}: to=<rt", timeout=10)
        assert "stat=Deferred: 451 4.3.0 cannot write to mailbox rt" in line, line
        assert "No space left on device" in line
        assert (site / "queue" / "active" / f"{qid}.env").exists()
        assert "Bounced" not in server.log() and "sender notify" not in server.log()
        ballast.unlink()
        flushed = run("queue", "flush", qid, site=site)
        assert flushed.returncode == 0, flushed.stderr
        in_log(server, "stat=Sent (250 2.0.0 delivered to maildir rt", timeout=10)
        delivered = list((site / "mail" / "rt" / "new").iterdir())
        assert len(delivered) == 1
        assert delivered[0].read_bytes().endswith(BODY_LINE.replace(b"\r\n", b"\n") * 2000)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in "".join(server.output)
