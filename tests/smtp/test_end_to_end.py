"""The example site end to end through a real `postroom serve`: SMTP in, couriers out to a
test relay standing for the external mailbox provider, Maildir, a program."""

from __future__ import annotations

import asyncio
import mailbox
import time
from pathlib import Path

import trustme

from tests.server import INBOUND_IP, Server, configure_site
from tests.sinks import Sink
from tests.smtp.smtp_client import client

MSG = b"From: a@example.net\r\nSubject: e2e\r\n\r\nHello through postroom.\r\n"


def send(port: int, source: str, sender: str, rcpts: list[str]) -> dict[str, object]:
    with client(port, source) as c:
        c.ehlo("relay.example.net")
        return c.sendmail(sender, rcpts, MSG)  # type: ignore[return-value]


async def wait_for(check, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_example_site_delivers_every_kind(example_site: Path, ca: trustme.CA) -> None:
    sink = await Sink().start()  # the external mailbox provider (staffmail)
    configure_site(example_site, ca)
    mt = example_site / "maps/mailertable"
    mt.write_text(mt.read_text().replace("esmtp:[127.0.0.1]:2526",  # staffmail's line
                                         f"esmtp:[127.0.0.1]:{sink.port}", 1))
    out = example_site / "prog.out"
    with open(example_site / "maps/aliases", "a") as f:
        f.write(f'ticket: "|/bin/sh -c \'cat > {out}\'"\n')
    server = await asyncio.to_thread(lambda: Server(example_site).start())
    try:
        refused = await asyncio.to_thread(
            send, server.ports["mx"], INBOUND_IP, "a@example.net",
            ["neilb@inf.example.ac.uk",          # forwarded: to the provider
             "rt@inf.example.ac.uk",             # local: Maildir
             "ticket@inf.example.ac.uk",         # program alias
             "mchen@cogsci.example.ac.uk",       # hosted domain, virtusertable
             "anyone@research.example.org"])     # catch-all
        assert refused == {}
        await wait_for(lambda: len({r for m in sink.messages for r in m.rcpt_tos}) == 3
                       and out.exists() and (example_site / "mail/rt/new").exists()
                       and any((example_site / "mail/rt/new").iterdir()))
        assert sorted(r for m in sink.messages for r in m.rcpt_tos) == [
            "anyone@staffmail.example.ac.uk", "mchen@staffmail.example.ac.uk",
            "neilb@staffmail.example.ac.uk"]
        assert all(m.content.endswith(MSG) for m in sink.messages)
        box = mailbox.Maildir(example_site / "mail/rt", create=False)
        (key,) = box.keys()
        assert box.get_bytes(key).endswith(MSG.replace(b"\r\n", b"\n"))  # Maildir: LF
        await wait_for(out.exists)
        await wait_for(lambda: b"Hello through postroom." in out.read_bytes())
        await wait_for(lambda: "stat=Sent" in server.log()
                       and server.log().count("stat=Sent") >= 5)
        log = server.log()
        assert "to=<neilb@staffmail.example.ac.uk>, orig_to=<neilb@inf.example.ac.uk>, " \
               "mailer=esmtp, relay=127.0.0.1 [127.0.0.1]" in log
        assert "mailer=local" in log and "mailer=prog" in log
    finally:
        await asyncio.to_thread(server.stop)
        await sink.stop()


async def test_null_client_sends_everything_to_the_hub(example_site: Path,
                                                       ca: trustme.CA) -> None:
    hub = await Sink().start()
    configure_site(example_site, ca)
    p = example_site / "postroom.toml"
    p.write_text(p.read_text().replace(
        'quiescent = false', f'quiescent = false\nrole = "null-client"\n'
                             f'hub = "[127.0.0.1]:{hub.port}"'))
    server = await asyncio.to_thread(lambda: Server(example_site).start())
    try:
        await asyncio.to_thread(send, server.ports["mx"], "127.0.0.3", "cron@desk",
                                ["rt@inf.example.ac.uk", "someone@gmail.example.com"])
        await wait_for(lambda: len(hub.messages) >= 1
                       and sum(len(m.rcpt_tos) for m in hub.messages) == 2)
        assert sorted(r for m in hub.messages for r in m.rcpt_tos) == [
            "rt@inf.example.ac.uk", "someone@gmail.example.com"]
    finally:
        await asyncio.to_thread(server.stop)
        await hub.stop()



async def test_bounce_by_the_postmaster_through_the_running_server(example_site: Path,
                                                                   ca: trustme.CA) -> None:
    """staffmail is unreachable, so mail for neilb waits; ``postroom queue bounce`` makes
    the running server (master and two intake processes) return it at once."""
    import email
    import email.policy
    import subprocess

    from postroom.queue.spool import Spool
    from tests.conftest import POSTROOM

    configure_site(example_site, ca)
    server = await asyncio.to_thread(lambda: Server(example_site, workers=2).start())
    try:
        refused = await asyncio.to_thread(send, server.ports["mx"], INBOUND_IP,
                                          "rt@inf.example.ac.uk", ["neilb@inf.example.ac.uk"])
        assert refused == {}
        await wait_for(lambda: "stat=Deferred" in server.log())
        with Spool(example_site / "queue") as spool:
            (qid,) = spool.ids()
        r = await asyncio.to_thread(subprocess.run, [
            POSTROOM, "queue", "bounce", "--site", str(example_site), qid],
            capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"{qid}: returned to sender\nserver ")
        new = example_site / "mail/rt/new"
        await wait_for(lambda: new.exists() and any(new.iterdir()))
        (path,) = new.iterdir()
        dsn = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
        assert "returned to the sender by the postmaster" in dsn.as_string()
        with Spool(example_site / "queue") as spool:
            await wait_for(lambda: qid not in spool.ids())
    finally:
        await asyncio.to_thread(server.stop)
