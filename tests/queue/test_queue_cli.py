"""``postroom queue`` against the example site, run as the admin runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from postroom.envelope import Delivery, Envelope, RcptState, Recipient
from postroom.queue.spool import Spool
from tests.conftest import POSTROOM

FIRST = "8DtEjreMK0001"
SECOND = "8DtEjreMK0002"
ARRIVAL = 1_700_000_000.0  # Tue Nov 14 22:13:20 2023 UTC
BODY = b"Received: from mx.example.org\r\nSubject: hello\r\nFrom: <alice@example.org>\r\n\r\n"


def queue(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([POSTROOM, "queue", "--site", str(site), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "TZ": "UTC"})


@pytest.fixture
def queued(example_site: Path) -> Path:
    """Two messages: one with a deferred and an expanded recipient, one held bounce."""
    first = Envelope(
        "alice@example.org",
        [Recipient("bob@example.net", [Delivery(
            "esmtp", "example.net", "bob@example.net", "bob@example.net",
            state=RcptState.DEFERRED, tries=3, next_attempt=ARRIVAL + 600,
            last_error="451 4.4.1 Connection refused", status="4.4.1")]),
         Recipient("staff@inf.example.ac.uk", [
             Delivery("local", "", "carol", "carol"),
             Delivery("esmtp", "x.org", "d@x.org", "d@x.org", state=RcptState.SENT, tries=1)])],
        ARRIVAL, id=FIRST, client_addr="192.0.2.1", client_name="mx.example.org",
        helo="mx.example.org", tls="TLSv1.3")
    second = Envelope("", [Recipient("root@inf.example.ac.uk")], ARRIVAL + 61, id=SECOND)
    with Spool(example_site / "queue") as spool:
        spool.put_sync(first, BODY + b"x" * 3000)
        spool.put_sync(second, b"Subject: bounce\n\nhi\n")
        spool.hold(SECOND)
    return example_site


def test_empty_queue(example_site: Path) -> None:
    r = queue(example_site)
    assert (r.returncode, r.stdout, r.stderr) == (0, "Mail queue is empty\n", "")


def test_listing_is_mailq_format(queued: Path) -> None:
    r = queue(queued)
    assert r.returncode == 0, r.stderr
    size = len(BODY) + 3000
    pad = " " * 45
    assert r.stdout.splitlines() == [
        "-Queue ID----- --Size-- ----Arrival Time---  -Sender/Recipient-------",
        f"{FIRST}  {size:>8} Tue Nov 14 22:13:20  alice@example.org",
        f"{pad}bob@example.net  deferred, 3 tries",
        f"{pad}  (451 4.4.1 Connection refused)",
        f"{pad}staff@inf.example.ac.uk",
        f"{pad}  -> carol  pending",
        f"{pad}  -> d@x.org  sent, 1 try",
        "",
        f"{SECOND}!       20 Tue Nov 14 22:14:21  MAILER-DAEMON",
        f"{pad}root@inf.example.ac.uk  pending",
        "",
        "-- 4 Kbytes in 2 Requests.",
    ]


def test_show(queued: Path) -> None:
    r = queue(queued, "show", FIRST)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"Queue ID:     {FIRST}\n" in out
    q = queued.resolve() / "queue"
    assert f"Message file: {q}/msg/{FIRST}.msg\nEnvelope:     {q}/active/{FIRST}.env\n" in out
    assert "Arrival:      2023-11-14 22:13:20 +0000\n" in out
    assert "Sender:       <alice@example.org>\n" in out
    assert ("Received via: ESMTP from mx.example.org [192.0.2.1] (HELO mx.example.org), "
            "TLSv1.3\n") in out
    assert ("    -> bob@example.net: mailer esmtp, host example.net, user bob@example.net\n"
            "       state deferred, 3 tries, next attempt 2023-11-14 22:23:20 +0000, "
            "status 4.4.1\n"
            "       last reply: 451 4.4.1 Connection refused\n") in out
    assert out.endswith("Headers:\nReceived: from mx.example.org\nSubject: hello\n"
                        "From: <alice@example.org>\n")
    held = queue(queued, "show", SECOND)
    assert f"Queue ID:     {SECOND}  (held)\n" in held.stdout


def test_hold_release_delete(queued: Path) -> None:
    r = queue(queued, "hold", FIRST)
    assert (r.returncode, r.stdout) == (0, f"{FIRST}: held\n")
    assert f"{FIRST}!" in queue(queued).stdout
    r = queue(queued, "release", FIRST, SECOND)
    assert (r.returncode, r.stdout) == (0, f"{FIRST}: released\n{SECOND}: released\n")
    with Spool(queued / "queue") as spool:
        assert not spool.is_held(FIRST) and not spool.is_held(SECOND)
    r = queue(queued, "delete", SECOND)
    assert (r.returncode, r.stdout) == (0, f"{SECOND}: deleted\n")
    assert "-- 4 Kbytes in 1 Request.\n" in queue(queued).stdout


@pytest.mark.parametrize("command", ["show", "hold", "release", "delete", "flush", "bounce"])
def test_unknown_id(queued: Path, command: str) -> None:
    r = queue(queued, command, "8DtEjreMK0003")
    assert r.returncode == 67
    assert r.stderr == "postroom: 8DtEjreMK0003: no such message in the queue\n"
    r = queue(queued, command, "../hold")
    assert r.returncode == 67
    assert "not a queue ID" in r.stderr


def test_unknown_id_among_good_ones(queued: Path) -> None:
    r = queue(queued, "hold", "8DtEjreMK0003", FIRST)
    assert r.returncode == 67
    assert r.stdout == f"{FIRST}: held\n"
    with Spool(queued / "queue") as spool:
        assert spool.is_held(FIRST)


def test_bounce_fails_what_is_left_and_releases(queued: Path) -> None:
    queue(queued, "hold", FIRST)
    r = queue(queued, "bounce", FIRST, SECOND)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"{FIRST}: returned to sender\n"
                        f"{SECOND}: nothing left to return (every delivery is done)\n"
                        "no server running (the bounces go out when it starts)\n")
    with Spool(queued / "queue") as spool:
        states = [(d.user, d.state, d.status, d.last_error)
                  for d in spool.load(FIRST).deliveries]
        assert spool.is_held(SECOND)  # nothing was returned: the admin's hold stands
    why = "returned to the sender by the postmaster"
    assert states == [("bob@example.net", RcptState.FAILED, "5.0.0", why),
                      ("carol", RcptState.FAILED, "5.0.0", why),
                      ("d@x.org", RcptState.SENT, "", "")]  # made already: stays made
    with Spool(queued / "queue") as spool:
        assert not spool.is_held(FIRST)  # released, so that the bounce goes out


def test_flush_without_server(queued: Path) -> None:
    r = queue(queued, "flush")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("1 message with deferred deliveries rescheduled; "
                        "no server running (the queue runs when it starts)\n")
    with Spool(queued / "queue") as spool:
        bob = spool.load(FIRST).recipients[0].deliveries[0]
        assert (bob.state, bob.next_attempt, bob.tries) == (RcptState.DEFERRED, 0.0, 3)


_FAKE_SERVER = """
import asyncio, json, sys
from postroom import control

async def main():
    async def flush(*args):
        print(json.dumps(["flush", *args]), flush=True)
        return {"ok": True}
    server = await control.serve(sys.argv[1], {"flush": flush})
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_flush_of_one_message_asks_the_server_for_that_message(queued: Path) -> None:
    """``queue flush ID`` asks the running server (control channel) to run that message
    only; with no server listening it says so."""
    server = subprocess.Popen([sys.executable, "-c", _FAKE_SERVER, str(queued / "state")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        r = queue(queued, "flush", FIRST)
        assert r.returncode == 0, r.stderr
        assert r.stdout == ("1 message with deferred deliveries rescheduled; "
                            "server told to run 1 message now\n")
        assert json.loads(server.stdout.readline()) == ["flush", FIRST]
        r = queue(queued, "flush")
        assert r.stdout.endswith("server told to run the queue now\n")
        assert json.loads(server.stdout.readline()) == ["flush"]
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    r = queue(queued, "flush")  # nobody listens any more
    assert r.stdout == ("0 messages with deferred deliveries rescheduled; "
                        "no server running (the queue runs when it starts)\n")


def test_stale_pid_file_never_signals_another_program(queued: Path) -> None:
    other = subprocess.Popen(["sleep", "60"])  # took the pid of a server long gone
    try:
        (queued / "state" / "serve.pid").write_text(f"{other.pid}\n")
        r = queue(queued, "flush")
        assert "no server running" in r.stdout
        assert other.poll() is None  # SIGUSR1 would have killed it
    finally:
        other.kill()
        other.wait()


def test_corrupt_envelope_in_listing(queued: Path) -> None:
    (queued / "queue" / "active" / f"{FIRST}.env").write_bytes(b"{broken")
    r = queue(queued)
    assert r.returncode == 0, r.stderr
    corrupt = queued.resolve() / "queue" / "corrupt" / f"{FIRST}.env"
    assert r.stdout.splitlines()[1] == f"{FIRST}  (envelope unreadable, moved to {corrupt})"
    assert r.stdout.endswith("-- 1 Kbytes in 1 Request.\n")
    assert corrupt.read_bytes() == b"{broken"


def test_no_site(tmp_path: Path) -> None:
    r = queue(tmp_path)
    assert r.returncode == 78
    assert "no site profile here" in r.stderr


def test_import_a_dead_machines_queue(example_site: Path, tmp_path: Path) -> None:
    """Complete messages come over with new IDs and their delivery states; a held one stays
    held; an unreadable envelope and an unfinished write stay behind; a second import
    finds nothing left."""
    dead = tmp_path / "dead-hub"
    with Spool(dead / "queue") as other:
        partly = Envelope("alice@example.org", [
            Recipient("bob@example.net", [Delivery("esmtp", "example.net", "bob@example.net",
                                                   "bob@example.net", state=RcptState.SENT,
                                                   tries=1)]),
            Recipient("rt@inf.example.ac.uk", [Delivery("local", "", "rt", "rt",
                                                        state=RcptState.DEFERRED, tries=2)])],
            ARRIVAL)
        first = other.put_sync(partly, BODY)
        second = other.put_sync(Envelope("", [Recipient("root@inf.example.ac.uk", [
            Delivery("local", "", "root", "root")])], ARRIVAL + 5), b"Subject: held\r\n\r\n")
        other.hold(second)
        broken = other.put_sync(Envelope("x@example.org", [], ARRIVAL), b"Subject: x\r\n\r\n")
    (dead / f"queue/active/{broken}.env").write_text("{not json")
    (dead / "queue/tmp/8DtEjreMK0009.env").write_text("an unfinished put")

    r = queue(example_site, "import", str(dead))
    assert r.returncode == 65, r.stderr  # EX_DATAERR: one message could not be taken
    moved = dict(line.split(": imported as ") for line in r.stdout.splitlines()
                 if ": imported as " in line)
    assert set(moved) == {first, second}
    assert f"{dead}: 2 imported, 1 skipped\n" in r.stdout
    assert f"postroom: {broken}: not imported: envelope cannot be read" in r.stderr
    with Spool(example_site / "queue") as spool:
        assert sorted(spool.ids()) == sorted(moved.values())
        env = spool.load(moved[first])
        assert env.sender == "alice@example.org" and env.arrival == ARRIVAL
        assert [(d.user, d.state, d.tries) for d in env.deliveries] == [
            ("bob@example.net", RcptState.SENT, 1), ("rt", RcptState.DEFERRED, 2)]
        assert spool.read_message(moved[first]) == BODY
        assert spool.is_held(moved[second])
    assert sorted(p.name for p in (dead / "queue/imported").iterdir()) == sorted(
        [f"{first}.env", f"{second}.env"])

    again = queue(example_site, "import", str(dead))
    assert f"{dead}: 0 imported, 1 skipped\n" in again.stdout


def test_import_refuses_what_is_not_a_queue(example_site: Path, tmp_path: Path) -> None:
    r = queue(example_site, "import", str(tmp_path))
    assert r.returncode != 0
    assert "not a postroom queue" in r.stderr
    r = queue(example_site, "import", str(example_site))
    assert "this server's own queue" in r.stderr


def _dead_spool(dead: Path, count: int) -> list[str]:
    with Spool(dead / "queue") as other:
        return [other.put_sync(Envelope("a@example.org", [Recipient("rt@inf.example.ac.uk", [
            Delivery("local", "", "rt", "rt")])], ARRIVAL + i), BODY) for i in range(count)]


def test_import_never_takes_a_message_twice(example_site: Path, tmp_path: Path) -> None:
    """A run that queued messages but did not mark them (``--keep`` stands for a run
    killed before marking), and an ID left in both active/ and hold/ by a crash."""
    dead = tmp_path / "dead-hub"
    first, second = _dead_spool(dead, 2)
    r = queue(example_site, "import", "--keep", str(dead))
    assert r.returncode == 0, r.stderr
    q = dead / "queue"
    os.link(q / f"active/{first}.env", q / f"hold/{first}.env")
    r = queue(example_site, "import", str(dead))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("already imported by an earlier run") == 3
    with Spool(example_site / "queue") as spool:
        assert len(spool.ids()) == 2
        assert sorted(spool.load(q_).salvaged_from for q_ in spool.ids()) == sorted(
            [first, second])


def test_import_refuses_a_queue_in_use_and_files_that_are_not_files(
        example_site: Path, tmp_path: Path) -> None:
    dead = tmp_path / "dead-hub"
    good, linked = _dead_spool(dead, 2)
    (dead / "queue/msg" / f"{linked}.msg").unlink()
    (dead / "queue/msg" / f"{linked}.msg").symlink_to("/etc/hostname")
    (dead / "queue/corrupt/8DtEjreMK0007.env").write_text("{")
    with Spool(dead / "queue") as still_running:
        still_running.ids()
        still_running._share_lock()  # what every process using a spool holds
        r = queue(example_site, "import", str(dead))
        assert r.returncode != 0
        assert "still using this queue" in r.stderr
    r = queue(example_site, "import", str(dead))
    assert r.returncode == 65
    assert f"{good}: imported as " in r.stdout
    assert f"postroom: {linked}: not imported: no usable message file" in r.stderr
    assert "postroom: 8DtEjreMK0007: not imported: the dead machine had put its envelope" \
        in r.stderr
    with Spool(example_site / "queue") as spool:
        (new,) = spool.ids()
        assert spool.read_message(new) == BODY
