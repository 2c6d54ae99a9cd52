"""The relay-test address forms over real SMTP, from every kind of client, and through
``postroom verify``: one verdict each (the table is tests/routing/test_relay_forms.py).

    outside   a stranger: refused at connect on mx; on 587 after STARTTLS and AUTH it may
              relay, so it meets the same RCPT checks as an internal machine
    inbound   an upstream relay on mx: may deliver our domains only
    internal  a machine in networks.relay on mx: may relay anywhere
"""

from __future__ import annotations

import shutil
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from postroom.queue.spool import Spool
from tests.conftest import run
from tests.routing.test_relay_forms import FORMS, Verdict
from tests.server import INBOUND_IP, OUTSIDE_IP, RELAY_IP, Server, configure_site
from tests.smtp.conftest import PASSWORD
from tests.smtp.smtp_client import client, tls_context

MSG = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n\r\nHello.\r\n"
CLIENTS = ["outside", "inbound", "internal"]


@pytest.fixture(scope="module")
def relay_site(tmp_path_factory: pytest.TempPathFactory, example_template: Path,
               ca: trustme.CA) -> Path:
    site = tmp_path_factory.mktemp("relay-tricks") / "site"
    shutil.copytree(example_template, site)
    configure_site(site, ca)
    r = run("users", "add", "alice", "--address", "alice@inf.example.ac.uk",
            "--password-stdin", site=site, input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    return site


@pytest.fixture(scope="module")
def relay_server(relay_site: Path) -> Iterator[Server]:
    s = Server(relay_site).start()
    yield s
    s.stop()


def session(server: Server, kind: str, ca: trustme.CA) -> smtplib.SMTP:
    """A client of ``kind`` that has said EHLO and MAIL FROM and may now send RCPTs."""
    if kind == "outside":
        c = client(server.ports["submission"], OUTSIDE_IP)
        c.starttls(context=tls_context(ca))
        c.ehlo("laptop.example.net")
        c.login("alice", PASSWORD)
        sender = "alice@inf.example.ac.uk"
    else:
        c = client(server.ports["mx"], INBOUND_IP if kind == "inbound" else RELAY_IP)
        c.ehlo("relay.example.net" if kind == "inbound" else "desk.inf.example.ac.uk")
        sender = "sender@example.net"
    code, reply = c.mail(sender)
    assert code == 250, reply
    return c


def expected_reply(form: str, verdict: Verdict, kind: str) -> tuple[int, str]:
    """(code, the start of the reply text) this client must get for RCPT TO:<form>."""
    if verdict.accepted and verdict.remote and kind == "inbound":
        return 550, "5.7.1 <"
    if verdict.accepted:
        return 250, "2.1.5 "
    if verdict.by_parser:  # aiosmtpd's own reply to an unparsable path
        return verdict.code, f"{verdict.status} Error: malformed address"
    return verdict.code, f"{verdict.status} <"


@pytest.mark.parametrize("kind", CLIENTS)
def test_rcpt_verdict_for_every_form(relay_server: Server, ca: trustme.CA, kind: str) -> None:
    """Every form on one transaction (a refused RCPT leaves it open): the reply is the
    resolver's verdict, whoever the client is; only plain relaying depends on the client."""
    c = session(relay_server, kind, ca)
    wrong = []
    for form, verdict in FORMS:
        code, raw = c.docmd("RCPT", f"TO:<{form}>")
        text = raw.decode()
        want_code, want_start = expected_reply(form, verdict, kind)
        ok = code == want_code and text.startswith(want_start)
        if ok and not verdict.accepted and not verdict.by_parser:
            ok = text.endswith(f">: {verdict.text}")  # the same words as verify
        if ok and want_code == 550 and verdict.remote:
            ok = text.endswith(">: Relaying denied")
        if not ok:
            wrong.append((form, code, text))
    c.docmd("RSET")  # nothing is sent: the accepted recipients are dropped
    c.quit()
    assert wrong == []


def test_verify_gives_the_same_verdict(relay_site: Path) -> None:
    r = run("verify", *[f for f, _ in FORMS], site=relay_site)
    assert r.returncode == 67, r.stderr
    assert r.stdout.splitlines() == [f"{f}... {v.text}" for f, v in FORMS]


@pytest.mark.parametrize(("form", "verdict"), [
    (f, v) for f, v in FORMS if not v.accepted and v.status != "5.1.1"], ids=[
    f for f, v in FORMS if not v.accepted and v.status != "5.1.1"])
def test_verify_explain_names_the_smtp_reply(relay_site: Path, form: str,
                                             verdict: Verdict) -> None:
    r = run("verify", "--explain", form, site=relay_site)
    assert (f"{form}: refused before routing: {verdict.code} {verdict.status} "
            f"{verdict.text}") in r.stdout.splitlines()


def test_stranger_on_mx_is_refused_before_any_rcpt(relay_server: Server) -> None:
    with pytest.raises(smtplib.SMTPConnectError) as e:
        client(relay_server.ports["mx"], OUTSIDE_IP)
    assert e.value.smtp_code == 554


def test_refusals_are_logged(relay_server: Server, ca: trustme.CA) -> None:
    c = session(relay_server, "internal", ca)
    code, _ = c.docmd("RCPT", "TO:<@mail.inf.example.ac.uk:user@other.example>")
    c.quit()
    assert code == 553
    assert ("553 5.7.1 <@mail.inf.example.ac.uk:user@other.example>: Relaying denied: "
            "source route not accepted") in relay_server.log()


def test_a_source_route_in_mail_from_is_dropped(relay_server: Server,
                                                relay_site: Path) -> None:
    """RFC 5321 4.1.1.3: the route of a reverse-path is ignored; the message is taken and
    the sender is the address without it (the bounce goes there)."""
    with client(relay_server.ports["mx"], RELAY_IP) as c:
        c.ehlo("desk.inf.example.ac.uk")
        assert c.docmd("MAIL", "FROM:<@old.example,@relay.example:cron@desk.example>")[0] \
            == 250
        # forwarded to staffmail, which the test site cannot reach: it stays queued
        assert c.docmd("RCPT", "TO:<neilb@inf.example.ac.uk>")[0] == 250
        code, reply = c.data(MSG)
    assert code == 250, reply
    qid = reply.decode().rsplit(" ", 1)[1]
    with Spool(relay_site / "queue") as spool:
        assert spool.load(qid).sender == "cron@desk.example"


def test_source_route_with_dsn_parameters(relay_server: Server) -> None:
    """The route is kept with parameters after the path, and still refused."""
    with client(relay_server.ports["mx"], RELAY_IP) as c:
        c.ehlo("desk.inf.example.ac.uk")
        c.mail("cron@desk.example")
        code, reply = c.docmd("RCPT", "TO:<@mail.inf.example.ac.uk:user@other.example> "
                                      "NOTIFY=NEVER")
        ok_code, _ = c.docmd("RCPT", "TO:<rt@inf.example.ac.uk> NOTIFY=NEVER")
    assert code == 553 and b"source route not accepted" in reply
    assert ok_code == 250
