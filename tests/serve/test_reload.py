"""A running ``postroom serve`` as an operator drives it: mail from ``postroom-sendmail``
goes out at once, ``postroom reload`` applies what can change live and names what needs a
restart, a renewed certificate is used by the next connection, a new list routes without a
reload, and log rotation loses no line."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trustme

from tests.conftest import SENDMAIL, run
from tests.server import INBOUND_IP, Server, configure_site
from tests.sinks import Sink
from tests.smtp.smtp_client import client

MSG = b"From: rt@inf.example.ac.uk\r\nSubject: hi\r\n\r\nHello.\r\n"


def route_to(site: Path, port: int) -> None:
    """Every outside destination of the example's mailertable goes to the sink."""
    mt = site / "maps/mailertable"
    mt.write_text(re.sub(r"(esmtp|relay):\[[^\]]+\](:\d+)?", f"esmtp:[127.0.0.1]:{port}",
                         mt.read_text()))


async def wait_for(check: Callable[[], bool], timeout: float = 20) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


@pytest.fixture
def ready(example_site: Path, ca: trustme.CA, sink: Sink) -> Path:
    configure_site(example_site, ca)
    route_to(example_site, sink.port)
    return example_site


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_sendmail_mail_reaches_the_sink_within_two_seconds(ready: Path,
                                                                 sink: Sink) -> None:
    """The default worker count (several intake processes and a master): a message
    submitted locally gets its first attempt at once, not after a 30 s hands-off."""
    server = await asyncio.to_thread(lambda: Server(ready, workers=0).start())
    try:
        start = time.monotonic()
        r = await asyncio.to_thread(
            subprocess.run, [SENDMAIL, "-f", "rt@inf.example.ac.uk", "neilb@inf.example.ac.uk"],
            input=MSG, capture_output=True, env={**os.environ, "POSTROOM_SITE": str(ready)})
        assert r.returncode == 0, r.stderr
        await wait_for(lambda: len(sink.messages) == 1, timeout=10)
        assert time.monotonic() - start < 2.0
        assert sink.messages[0].rcpt_tos == ["neilb@staffmail.example.ac.uk"]
    finally:
        await asyncio.to_thread(server.stop)


def _peer_cert(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with client(port, INBOUND_IP) as c:
        c.ehlo("x")
        c.starttls(context=ctx)
        sock = c.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        return der


async def test_reload_applies_live_keys_names_restart_keys_and_renews_the_certificate(
        ready: Path) -> None:
    server = await asyncio.to_thread(lambda: Server(ready).start())
    try:
        before = await asyncio.to_thread(_peer_cert, server.ports["submission"])
        other = trustme.CA().issue_cert("mail.inf.example.ac.uk")  # the renewed one
        other.private_key_pem.write_to_path(str(ready / "tls/key.pem"))
        other.cert_chain_pems[0].write_to_path(str(ready / "tls/cert.pem"))
        profile = ready / "postroom.toml"
        text = profile.read_text()
        text = re.sub(r"^message_size = \d+$", "message_size = 123456", text, flags=re.M)
        text = text.replace('name = "mx"\nrole = "mx"\naddress = "127.0.0.1"\nport = 0',
                            'name = "mx"\nrole = "mx"\naddress = "127.0.0.1"\nport = 2599')
        profile.write_text(text)
        r = await asyncio.to_thread(run, "reload", site=ready)
        assert r.returncode == 0, r.stderr
        assert "server reloaded" in r.stdout
        assert "in force now: limits.message_size" in r.stdout
        assert "needs a restart to take effect (postroom serve): listeners" in r.stdout
        after = await asyncio.to_thread(_peer_cert, server.ports["submission"])
        assert after != before and after == ssl.PEM_cert_to_DER_cert(
            other.cert_chain_pems[0].bytes().decode())

        def size() -> str:
            with client(server.ports["mx"], INBOUND_IP) as c:
                c.ehlo("x")
                return c.esmtp_features["size"]

        assert await asyncio.to_thread(size) == "123456"  # the next connection's limit
        assert "needs a restart: listeners" in server.log()
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_broken_profile_is_reported_and_nothing_changes(ready: Path) -> None:
    server = await asyncio.to_thread(lambda: Server(ready).start())
    try:
        (ready / "postroom.toml").write_text((ready / "postroom.toml").read_text()
                                             + "\n[limits\n")
        r = await asyncio.to_thread(run, "reload", site=ready)
        assert r.returncode == 78
        assert "postroom.toml" in r.stderr and "last good version stays" in r.stderr
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_new_list_routes_without_a_reload(ready: Path) -> None:
    assert run("db", "upgrade", site=ready).returncode == 0
    server = await asyncio.to_thread(lambda: Server(ready, workers=2).start())

    def rcpt(addr: str) -> int:
        with client(server.ports["mx"], INBOUND_IP) as c:
            c.ehlo("x")
            c.mail("a@example.net")
            return c.rcpt(addr)[0]

    try:
        assert await asyncio.to_thread(rcpt, "physics-seminar@inf.example.ac.uk") == 550
        r = await asyncio.to_thread(run, "lists", "create", "physics-seminar", site=ready)
        assert r.returncode == 0, r.stderr
        # every intake process has it (connections spread over them)
        codes = [await asyncio.to_thread(rcpt, "physics-seminar@inf.example.ac.uk")
                 for _ in range(6)]
        assert codes == [250] * 6
        r = await asyncio.to_thread(run, "lists", "delete", "physics-seminar@inf.example.ac.uk",
                                    site=ready)
        assert r.returncode == 0, r.stderr
        assert await asyncio.to_thread(rcpt, "physics-seminar@inf.example.ac.uk") == 550
    finally:
        await asyncio.to_thread(server.stop)


async def test_logrotate_snippet_rename_reload_and_the_next_line_is_in_the_new_log(
        ready: Path, sink: Sink) -> None:
    """What contrib/logrotate/postroom does: rename the log, then ``postroom reload``."""
    snippet = (Path(__file__).parents[2] / "contrib/logrotate/postroom").read_text()
    assert "postroom reload" in snippet and "mail.log" in snippet
    server = await asyncio.to_thread(lambda: Server(ready, workers=2).start())
    log = ready / "log/mail.log"
    try:
        shutil.move(log, ready / "log/mail.log.1")
        r = await asyncio.to_thread(run, "reload", site=ready)
        assert r.returncode == 0, r.stderr
        await asyncio.sleep(0.3)  # the intake processes reload after the master answers

        def send() -> None:
            with client(server.ports["mx"], INBOUND_IP) as c:
                c.sendmail("a@example.net", ["neilb@inf.example.ac.uk"], MSG)

        await asyncio.to_thread(send)
        await wait_for(lambda: len(sink.messages) == 1)
        await wait_for(lambda: log.exists() and "stat=Sent" in log.read_text())
        assert "from=<a@example.net>" in log.read_text()
        assert "stat=Sent" not in (ready / "log/mail.log.1").read_text()
    finally:
        await asyncio.to_thread(server.stop)


async def test_queue_import_is_delivered_at_once_by_a_running_server(
        ready: Path, sink: Sink, tmp_path: Path) -> None:
    """A dead machine's queue, imported while the server runs: each message goes in
    through inject and the server tries it at once."""
    from postroom import runtime
    from postroom.queue import accept
    from postroom.queue.spool import Spool

    resolver = runtime.build(ready).resolver
    dead = tmp_path / "dead" / "queue"
    with Spool(dead) as spool:
        rcpt = accept.make_recipient("neilb@inf.example.ac.uk",
                                     resolver.resolve("neilb@inf.example.ac.uk").routes)
        env = accept.new_envelope("rt@inf.example.ac.uk", [rcpt])
        env.arrival = time.time()
        spool.put_sync(env, MSG)
    server = await asyncio.to_thread(lambda: Server(ready, workers=2).start())
    try:
        start = time.monotonic()
        r = await asyncio.to_thread(run, "queue", "import", str(dead), site=ready)
        assert r.returncode == 0, r.stderr
        assert "server told of each message" in r.stdout
        await wait_for(lambda: len(sink.messages) == 1, timeout=10)
        assert time.monotonic() - start < 3.0
    finally:
        await asyncio.to_thread(server.stop)
