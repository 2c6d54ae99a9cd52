"""SMTP intake end to end: a real `postroom serve`, real clients from several 127.x
addresses standing for upstream relays, internal machines and strangers."""

from __future__ import annotations

import email
import email.policy
import re
import signal
import smtplib
import subprocess
import time
from pathlib import Path

import pytest
import trustme

from postroom.queue.spool import Spool
from tests.conftest import run
from tests.server import INBOUND_IP, OUTSIDE_IP, RELAY_IP, Server, serving
from tests.smtp.conftest import PASSWORD
from tests.smtp.smtp_client import Raw, client, tls_context

MSG = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n\r\nHello.\r\n"
QUEUED = re.compile(r"Ok: queued as (\w+)")
# Forwarded off-site: the suite's closed delivery port keeps its mail in the queue, where a
# test can read the stored copy (mail to a local mailbox may be delivered and gone first).
STAYS_QUEUED = "neilb@inf.example.ac.uk"


def queued_ids(site: Path) -> list[str]:
    with Spool(site / "queue") as spool:
        return spool.ids()


def load(site: Path, qid: str):  # type: ignore[no-untyped-def]
    with Spool(site / "queue") as spool:
        return spool.load(qid), spool.read_message(qid)


# -- the acceptance matrix ------------------------------------------------------------------

def test_stranger_refused_at_connect(server: Server) -> None:
    with pytest.raises(smtplib.SMTPConnectError) as e:
        client(server.ports["mx"], OUTSIDE_IP)
    assert e.value.smtp_code == 554
    assert b"5.7.1" in e.value.smtp_error
    assert "reject: CONNECT from [127.0.0.4]: 554 5.7.1" in server.log()


@pytest.mark.parametrize(("rcpt", "code", "text"), [
    ("rt@inf.example.ac.uk", 250, "2.1.5"),
    ("neilb@inf.example.ac.uk", 250, "2.1.5"),                  # forwarded user
    ("postie@inf.example.ac.uk", 250, "2.1.5"),                 # a list
    ("rt@lists.inf.example.ac.uk", 250, "2.1.5"),               # host name = local
    ("mchen@cogsci.example.ac.uk", 250, "2.1.5"),               # hosted domain user
    ("anyone@research.example.org", 250, "2.1.5"),              # catch-all
    ("nosuch@inf.example.ac.uk", 550, "5.1.1 <nosuch@inf.example.ac.uk>: No such user"),
    ("nobody@cogsci.example.ac.uk", 550, "5.1.1 <nobody@cogsci.example.ac.uk>: No such user"),
    ("someone@gmail.example.com", 550, "5.7.1 <someone@gmail.example.com>: Relaying denied"),
])
def test_upstream_relay_matrix(server: Server, rcpt: str, code: int, text: str) -> None:
    with client(server.ports["mx"], INBOUND_IP) as c:
        c.ehlo("relay.example.net")
        c.mail("sender@example.net")
        got = c.rcpt(rcpt)
    assert got[0] == code
    assert text in got[1].decode()


@pytest.mark.parametrize("rcpt", ["someone@gmail.example.com", "rt@inf.example.ac.uk"])
def test_internal_clients_relay_anywhere(server: Server, rcpt: str) -> None:
    with client(server.ports["mx"], RELAY_IP) as c:
        c.ehlo("desk.inf.example.ac.uk")
        refused = c.sendmail("cron@desk.inf.example.ac.uk", [rcpt], MSG)
    assert refused == {}


@pytest.mark.parametrize("rcpt", [
    "user%gmail.example.com@inf.example.ac.uk",
    "gmail.example.com!user@inf.example.ac.uk",
    "@inf.example.ac.uk:user@gmail.example.com",
    '"user@gmail.example.com"@inf.example.ac.uk',
    "user@gmail.example.com@inf.example.ac.uk",
    "user%gmail.example.com@[127.0.0.1]",
    '"user%gmail.example.com"@inf.example.ac.uk',
])
def test_open_relay_probes_refused(server: Server, rcpt: str) -> None:
    """The classic relay-test address forms from an upstream relay get 5xx, never 250."""
    r = Raw(server.ports["mx"], INBOUND_IP)
    r.reply()
    r.cmd("EHLO probe.example.net")
    assert r.cmd("MAIL FROM:<probe@example.net>").startswith("250")
    reply = r.cmd(f"RCPT TO:<{rcpt}>")
    r.close()
    assert reply[0] == "5", reply


def test_accepted_message_is_queued_with_routes_and_trace(server: Server, site: Path) -> None:
    with client(server.ports["mx"], INBOUND_IP) as c:
        c.ehlo("relay.example.net")
        c.mail("sender@example.net", ["RET=HDRS", "ENVID=abc+2B123"])
        c.rcpt("neilb@inf.example.ac.uk", ["NOTIFY=SUCCESS,FAILURE",
                                            "ORCPT=rfc822;neilb@inf.example.ac.uk"])
        c.rcpt("helpdesk@inf.example.ac.uk")
        code, reply = c.data(MSG)
    assert code == 250
    qid = QUEUED.search(reply.decode()).group(1)  # type: ignore[union-attr]
    env, data = load(site, qid)
    assert env.sender == "sender@example.net"
    assert env.ret == "HDRS" and env.envid == "abc+2B123"
    assert [r.address for r in env.recipients] == ["neilb@inf.example.ac.uk",
                                                    "helpdesk@inf.example.ac.uk"]
    assert env.recipients[0].notify == ["FAILURE", "SUCCESS"]
    assert env.recipients[0].orcpt == "rfc822;neilb@inf.example.ac.uk"
    assert [(d.mailer, d.host, d.user) for d in env.recipients[0].deliveries] == [
        ("esmtp", "[127.0.0.1]:2526", "neilb@staffmail.example.ac.uk")]
    assert [d.mailer for d in env.recipients[1].deliveries] == ["local", "esmtp"]
    assert env.client_addr == INBOUND_IP
    msg = email.message_from_bytes(data, policy=email.policy.SMTP)
    received = msg["Received"]
    assert "from relay.example.net" in received and "[127.0.0.2]" in received
    assert f"by mail.inf.example.ac.uk (postroom) with ESMTP id {qid}" in received
    assert data.endswith(MSG)
    assert "Message-ID" not in msg  # mx mail is not rewritten
    log = server.log()
    assert (f"{qid}: from=<sender@example.net>, size={len(data)}, nrcpts=2, proto=ESMTP, "
            "relay=relay.example.net [127.0.0.2]") in log
    out = run("queue", site=site).stdout
    assert qid in out and "sender@example.net" in out


# -- submission -----------------------------------------------------------------------------

def test_submission_needs_tls_before_auth(server: Server) -> None:
    with client(server.ports["submission"], OUTSIDE_IP) as c:
        code, text = c.ehlo("laptop")
        assert b"AUTH" not in text and b"STARTTLS" in text
        code, _ = c.docmd("AUTH", "PLAIN AGFsaWNlAHg=")
        assert code == 530
        code, _ = c.docmd("MAIL", "FROM:<alice@inf.example.ac.uk>")
        assert code == 530


def test_submission_auth_relay_and_sender_check(server: Server, site: Path,
                                                ca: trustme.CA) -> None:
    with client(server.ports["submission"], OUTSIDE_IP) as c:
        c.starttls(context=tls_context(ca))
        code, text = c.ehlo("laptop")
        assert b"AUTH LOGIN PLAIN" in text
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            c.login("alice", "wrong")
        assert e.value.smtp_code == 535
        c.login("alice", PASSWORD)
        code, reply = c.mail("bob@inf.example.ac.uk")
        assert (code, b"5.7.1" in reply) == (553, True)
        c.rset()
        assert c.mail("a.smith@inf.example.ac.uk")[0] == 250
        assert c.rcpt("friend@gmail.example.com")[0] == 250
        code, reply = c.data(MSG)
    assert code == 250
    qid = QUEUED.search(reply.decode()).group(1)  # type: ignore[union-attr]
    env, data = load(site, qid)
    assert env.auth_user == "alice" and env.protocol == "ESMTPSA" and env.tls.startswith("TLS")
    msg = email.message_from_bytes(data, policy=email.policy.SMTP)
    assert msg["Message-ID"].endswith("@mail.inf.example.ac.uk>")
    assert msg["Date"]
    assert "with ESMTPSA id" in msg["Received"] and "(using TLSv1." in msg["Received"]
    assert f"{qid}: from=<a.smith@inf.example.ac.uk>" in server.log()
    assert "auth=alice, tls=TLSv1." in server.log()


def test_submissions_implicit_tls_auth_login(server: Server, ca: trustme.CA) -> None:
    with client(server.ports["submissions"], OUTSIDE_IP, tls=True, ca=ca) as c:
        c.ehlo("laptop")
        assert "starttls" not in c.esmtp_features
        c.login("alice", PASSWORD)  # smtplib prefers CRAM-MD5, PLAIN, LOGIN; force LOGIN:
        refused = c.sendmail("alice@inf.example.ac.uk", ["x@gmail.example.com"], MSG)
    assert refused == {}
    with client(server.ports["submissions"], OUTSIDE_IP, tls=True, ca=ca) as c:
        c.ehlo("laptop")
        c.user, c.password = "alice", PASSWORD
        code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert code == 235


def test_failed_auth_is_rate_limited(server: Server, ca: trustme.CA) -> None:
    with client(server.ports["submissions"], OUTSIDE_IP, tls=True, ca=ca) as c:
        c.ehlo("guesser")
        c.user, c.password = "alice", "guess"
        codes = [_auth_code(c) for _ in range(7)]
        assert codes == [535] * 5 + [454, 454]
        # even the right password is refused while paused
        c.password = PASSWORD
        assert _auth_code(c) == 454


def test_auth_limit_holds_across_intake_processes(example_site: Path, ca: trustme.CA) -> None:
    """Three intake processes share the listening socket, so a guesser's connections land
    on any of them: the count is still one per client address."""
    with serving(example_site, ca, workers=3) as s:
        codes = []
        for _ in range(9):
            with client(s.ports["submissions"], OUTSIDE_IP, tls=True, ca=ca) as c:
                c.ehlo("guesser")
                c.user, c.password = "alice", "guess"
                codes.append(_auth_code(c))
    assert codes == [535] * 5 + [454] * 4


def _auth_code(c: smtplib.SMTP) -> int:
    """One AUTH PLAIN exchange (smtplib's login() would try several mechanisms)."""
    try:
        return c.auth("PLAIN", c.auth_plain)[0]
    except smtplib.SMTPAuthenticationError as e:
        return e.smtp_code


def test_swaks_submission_with_starttls_and_auth(server: Server, site: Path) -> None:
    r = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(server.ports["submission"]),
         "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", PASSWORD,
         "--from", "alice@inf.example.ac.uk", "--to", "someone@gmail.example.com",
         "--helo", "laptop.example"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<~  235 2.7.0 Authentication successful" in r.stdout  # ~ : inside TLS
    assert "<~  250 2.0.0 Ok: queued as" in r.stdout


# -- ESMTP features and limits ----------------------------------------------------------------

def test_ehlo_advertises_extensions(server: Server) -> None:
    with client(server.ports["mx"], INBOUND_IP) as c:
        c.ehlo("x")
        for ext in ("pipelining", "8bitmime", "smtputf8", "size", "enhancedstatuscodes", "dsn"):
            assert ext in c.esmtp_features, ext
        assert c.esmtp_features["size"] == "52428800"
        assert "auth" not in c.esmtp_features


def test_smtputf8(server: Server, site: Path) -> None:
    msg = "From: ü@example.org\r\nSubject: ünïcode\r\n\r\nGrüße\r\n".encode()
    with client(server.ports["mx"], RELAY_IP) as c:
        c.ehlo("x")
        c.mail("jürgen@example.org", ["SMTPUTF8", "BODY=8BITMIME"])
        assert c.rcpt("zoë@gmail.example.com")[0] == 250
        code, reply = c.data(msg)
    assert code == 250
    env, data = load(site, QUEUED.search(reply.decode()).group(1))  # type: ignore[union-attr]
    assert env.smtputf8 and env.body == "8BITMIME" and env.sender == "jürgen@example.org"
    assert data.endswith(msg)


def test_pipelining(server: Server, site: Path) -> None:
    r = Raw(server.ports["mx"], RELAY_IP)
    r.reply()
    r.cmd("EHLO pipeliner")
    r.send(b"MAIL FROM:<p@example.org>\r\nRCPT TO:<rt@inf.example.ac.uk>\r\n"
           b"RCPT TO:<nosuch@inf.example.ac.uk>\r\nRCPT TO:<x@gmail.example.com>\r\nDATA\r\n")
    replies = [r.reply() for _ in range(5)]
    assert [x[:3] for x in replies] == ["250", "250", "550", "250", "354"]
    r.send(MSG + b".\r\nQUIT\r\n")
    assert r.reply().startswith("250 2.0.0 Ok: queued as")
    assert r.reply().startswith("221")


def test_size_limit(example_site: Path, ca: trustme.CA) -> None:
    small = (("message_size = 52428800", "message_size = 2048"),)
    with serving(example_site, ca, replace=small) as s, client(s.ports["mx"], RELAY_IP) as c:
        c.ehlo("x")
        assert c.esmtp_features["size"] == "2048"
        code, reply = c.mail("a@example.org", ["SIZE=5000"])
        assert (code, reply[:5]) == (552, b"5.3.4")
        c.rset()
        c.mail("a@example.org")
        c.rcpt("rt@inf.example.ac.uk")
        code, reply = c.data(MSG + (b"x" * 70 + b"\r\n") * 50)
        assert (code, reply[:5]) == (552, b"5.3.4")


def test_size_and_line_limits_are_exact(example_site: Path, ca: trustme.CA) -> None:
    """A message of exactly the size limit is taken even when the ending arrives in pieces;
    a 998-octet line is legal even when it starts with a (doubled) dot."""
    small = (("message_size = 52428800", "message_size = 2048"),)
    with serving(example_site, ca, replace=small) as s:
        r = Raw(s.ports["mx"], RELAY_IP)
        r.reply()
        r.cmd("EHLO x")
        head = b"Subject: exact\r\n\r\n"
        lines = b"x" * 98 + b"\r\n"
        rest = 2048 - len(head) - 20 * len(lines)
        body = head + lines * 20 + b"y" * (rest - 2) + b"\r\n"
        assert len(body) == 2048
        for split in (b"\r\n.", b"\r\n.\r"):
            r.cmd("MAIL FROM:<a@example.org>")
            r.cmd("RCPT TO:<rt@inf.example.ac.uk>")
            assert r.cmd("DATA").startswith("354")
            r.send(body[:-2] + split)
            time.sleep(0.1)
            r.send(b"\r\n.\r\n"[len(split):])
            assert r.reply().startswith("250 2.0.0"), split
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd(f"RCPT TO:<{STAYS_QUEUED}>")
        r.cmd("DATA")
        r.send(b"Subject: dots\r\n\r\n." + b"." + b"d" * 997 + b"\r\n.\r\n")
        reply = r.reply()
        assert reply.startswith("250 2.0.0"), reply
        _, data = load(example_site, QUEUED.search(reply).group(1))  # type: ignore[union-attr]
        assert data.endswith(b"\r\n\r\n." + b"d" * 997 + b"\r\n")


def test_limits_recipients_line_length_idle(example_site: Path, ca: trustme.CA) -> None:
    tight = (("recipients = 1000", "recipients = 2\nidle_timeout = 1"),)
    with serving(example_site, ca, replace=tight) as s:
        r = Raw(s.ports["mx"], RELAY_IP)
        r.reply()
        r.cmd("EHLO x")
        r.cmd("MAIL FROM:<a@example.org>")
        assert r.cmd("RCPT TO:<rt@inf.example.ac.uk>").startswith("250")
        assert r.cmd("RCPT TO:<root@inf.example.ac.uk>").startswith("250")
        assert r.cmd("RCPT TO:<mp-unit@inf.example.ac.uk>").startswith("452 4.5.3")
        assert r.cmd("DATA").startswith("354")
        r.send(b"Subject: long\r\n\r\n" + b"x" * 1200 + b"\r\n.\r\n")
        assert r.reply().startswith("500 5.5.2 Line too long")
        time.sleep(1.5)
        assert r.reply().startswith("421 4.4.2")
        assert r.closed()


# -- known attacks -----------------------------------------------------------------------------

@pytest.mark.parametrize("ending", [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n"])
def test_smtp_smuggling_never_splits_a_message(server: Server, site: Path,
                                               ending: bytes) -> None:
    """Only <CRLF>.<CRLF> ends DATA; a smuggled second MAIL FROM stays inside (and, with
    bare LF forbidden, the message is refused as a whole)."""
    before = set(queued_ids(site))
    r = Raw(server.ports["mx"], RELAY_IP)
    r.reply()
    r.cmd("EHLO smuggler")
    r.cmd("MAIL FROM:<a@example.org>")
    r.cmd(f"RCPT TO:<{STAYS_QUEUED}>")
    assert r.cmd("DATA").startswith("354")
    r.send(b"Subject: one\r\n\r\nfirst" + ending +
           b"MAIL FROM:<admin@inf.example.ac.uk>\r\nRCPT TO:<" + STAYS_QUEUED.encode() + b">\r\n"
           b"DATA\r\nSubject: smuggled\r\n\r\nsecond\r\n.\r\n")
    reply = r.reply()
    r.send(b"QUIT\r\n")
    assert r.reply().startswith("221"), "a smuggled command was run"
    new = set(queued_ids(site)) - before
    if b"\n" in ending.replace(b"\r\n", b""):
        assert reply.startswith("550 5.5.2"), reply
        assert new == set()
    else:
        assert reply.startswith("250"), reply
        (qid,) = new
        _, data = load(site, qid)
        assert b"Subject: smuggled" in data  # kept inside the one message


def test_bare_lf_normalised_when_allowed(example_site: Path, ca: trustme.CA) -> None:
    with serving(example_site, ca, extra="\n[smtp]\nforbid_bare_newline = false\n") as s:
        r = Raw(s.ports["mx"], RELAY_IP)
        r.reply()
        r.cmd("EHLO x")
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd(f"RCPT TO:<{STAYS_QUEUED}>")
        r.cmd("DATA")
        r.send(b"Subject: lf\n\nline one\nline two\r\n.\r\n")
        reply = r.reply()
        assert reply.startswith("250"), reply
        qid = QUEUED.search(reply).group(1)  # type: ignore[union-attr]
        _, data = load(example_site, qid)
        assert data.endswith(b"Subject: lf\r\n\r\nline one\r\nline two\r\n")


def test_starttls_command_injection_discarded(server: Server, ca: trustme.CA) -> None:
    r = Raw(server.ports["submission"], OUTSIDE_IP)
    r.reply()
    r.cmd("EHLO x")
    r.send(b"STARTTLS\r\nNOOP injected\r\n")  # the NOOP arrives before the handshake
    assert r.reply().startswith("220")
    ctx = tls_context(ca)
    tls = ctx.wrap_socket(r.sock, server_hostname="localhost")
    tls.sendall(b"EHLO x\r\n")
    first = tls.recv(4096)
    assert first.startswith(b"250-"), first  # not a reply to the injected NOOP
    tls.close()


def test_header_injection_through_envelope(server: Server, site: Path) -> None:
    before = set(queued_ids(site))
    r = Raw(server.ports["mx"], RELAY_IP)
    r.reply()
    r.cmd("EHLO x")
    sender_reply = r.cmd("MAIL FROM:<a@example.org>\rBcc: victim@example.org")
    rcpt_reply = r.cmd("RCPT TO:<rt@inf.example.ac.uk>\rX-Evil: yes")
    r.close()
    assert not sender_reply.startswith("250") or not rcpt_reply.startswith("250")
    assert set(queued_ids(site)) == before


# -- quiescent mode, signals, crash safety -----------------------------------------------------

def test_quiescent_mode_and_restart(site: Path) -> None:
    s = Server(site).start()
    try:
        assert run("quiesce", "--reason", "restoring", site=site).returncode == 0
        for port, src in ((s.ports["mx"], INBOUND_IP), (s.ports["submission"], OUTSIDE_IP)):
            with pytest.raises(smtplib.SMTPConnectError) as e:
                client(port, src)
            assert e.value.smtp_code == 421
            assert e.value.smtp_error == (b"4.3.2 mail.inf.example.ac.uk Service not "
                                          b"available, closing transmission channel")
        st = run("status", site=site).stdout
        assert "QUIESCENT (restoring)" in st and "running" in st
    finally:
        s.stop()
    s = Server(site).start()  # survives a restart
    try:
        with pytest.raises(smtplib.SMTPConnectError):
            client(s.ports["mx"], INBOUND_IP)
        assert run("resume", site=site).returncode == 0
        with client(s.ports["mx"], INBOUND_IP) as c:
            assert c.ehlo("x")[0] == 250
    finally:
        s.stop()


def test_profile_quiescent(example_site: Path, ca: trustme.CA) -> None:
    with serving(example_site, ca, replace=(("quiescent = false", "quiescent = true"),)) as s:
        with pytest.raises(smtplib.SMTPConnectError) as e:
            client(s.ports["mx"], INBOUND_IP)
        assert e.value.smtp_code == 421
        assert "profile says quiescent" in run("status", site=example_site).stdout


def test_sighup_reload_keeps_last_good(server: Server, site: Path) -> None:
    def rcpt(addr: str) -> int:
        with client(server.ports["mx"], INBOUND_IP) as c:
            c.ehlo("x")
            c.mail("a@example.net")
            return c.rcpt(addr)[0]

    assert rcpt("newbie@inf.example.ac.uk") == 550
    with open(site / "maps/forwards", "a") as f:
        f.write("newbie: newbie@staffmail.example.ac.uk\n")
    server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload: profile and maps reloaded" not in server.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rcpt("newbie@inf.example.ac.uk") == 250
    with open(site / "maps/forwards", "a") as f:
        f.write("broken line\n")
    server.signal(signal.SIGHUP)
    while "reload failed" not in server.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "forwards:11: missing ':'" in server.log()
    assert rcpt("newbie@inf.example.ac.uk") == 250  # the last good maps are still in force


def test_sigterm_drains_open_transaction(server: Server, site: Path) -> None:
    r = Raw(server.ports["mx"], RELAY_IP)
    r.reply()
    r.cmd("EHLO x")
    r.cmd("MAIL FROM:<a@example.org>")
    r.cmd(f"RCPT TO:<{STAYS_QUEUED}>")
    idle = Raw(server.ports["mx"], RELAY_IP)
    idle.reply()
    server.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert r.cmd("DATA").startswith("354")
    r.send(MSG + b".\r\n")
    assert r.reply().startswith("250 2.0.0 Ok: queued as")
    assert r.closed()
    assert idle.reply().startswith("421 4.3.2")
    assert server.proc is not None and server.proc.wait(20) == 0


def test_missing_certificate_is_a_clear_startup_error(site: Path) -> None:
    (site / "tls/cert.pem").unlink()
    r = subprocess.run([*_serve(site)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 78
    assert "tls.cert" in r.stderr and "cert.pem does not exist" in r.stderr


def _serve(site: Path) -> list[str]:
    from tests.conftest import POSTROOM
    return [POSTROOM, "serve", "--site", str(site), "--workers", "1"]


def test_header_size_limit_and_dot_stuffing(example_site: Path, ca: trustme.CA) -> None:
    small = (("message_size = 52428800", "message_size = 52428800\nheader_size = 1024"),)
    with serving(example_site, ca, replace=small) as s:
        r = Raw(s.ports["mx"], RELAY_IP)
        r.reply()
        r.cmd("EHLO x")
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd("RCPT TO:<neilb@inf.example.ac.uk>")
        r.cmd("DATA")
        r.send(b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 60) for i in range(30))
               + b"\r\nbody\r\n.\r\n")
        assert r.reply().startswith("552 5.3.4 Message header size exceeds limit")
        r.cmd("MAIL FROM:<a@example.org>")
        r.cmd("RCPT TO:<neilb@inf.example.ac.uk>")
        r.cmd("DATA")
        r.send(b"Subject: dots\r\n\r\n..leading dot\r\n.\r\n")
        reply = r.reply()
        qid = QUEUED.search(reply).group(1)  # type: ignore[union-attr]
        _, data = load(example_site, qid)
        assert data.endswith(b"\r\n\r\n.leading dot\r\n")  # the client's dot-stuffing undone


def test_data_in_any_pieces_and_pipelined_after(server: Server, site: Path) -> None:
    """DATA is read in blocks: the ending may arrive split across packets, commands
    pipelined after it in the same packet are kept for the next command, the body is
    stored byte for byte (NUL and 8-bit included), and the line limit is exact."""
    r = Raw(server.ports["mx"], RELAY_IP)
    r.reply()
    r.cmd("EHLO pieces")

    def transaction() -> None:
        assert r.cmd("MAIL FROM:<a@example.org>").startswith("250")
        assert r.cmd(f"RCPT TO:<{STAYS_QUEUED}>").startswith("250")
        assert r.cmd("DATA").startswith("354")

    def stored(reply: str) -> bytes:
        assert reply.startswith("250 2.0.0"), reply
        return load(site, QUEUED.search(reply).group(1))[1]  # type: ignore[union-attr]

    transaction()
    body = b"Subject: pieces\r\n\r\n..first\r\nNUL\x00 and \xff\r\n" + b"y" * 998 + b"\r\n"
    r.send(body[:-1])
    for piece in (b"\n", b".", b"\r", b"\n"):  # the ending split across packets
        time.sleep(0.05)
        r.send(piece)
    assert stored(r.reply()).endswith(b"\r\n\r\n.first\r\nNUL\x00 and \xff\r\n"
                                      + b"y" * 998 + b"\r\n")

    transaction()
    r.send(b"Subject: two\r\n\r\ntwo\r\n.\r\nMAIL FROM:<b@example.org>\r\n"
           b"RCPT TO:<" + STAYS_QUEUED.encode() + b">\r\nDATA\r\n")
    assert stored(r.reply()).endswith(b"Subject: two\r\n\r\ntwo\r\n")
    assert r.reply().startswith("250 2.1.0")
    assert r.reply().startswith("250 2.1.5")
    assert r.reply().startswith("354")
    r.send(b".\r\n")  # an empty message: only our Received header
    empty = stored(r.reply())
    assert empty.startswith(b"Received: ") and b"\r\n\r\n" not in empty

    transaction()
    r.send(b"Subject: long\r\n\r\n" + b"z" * 999 + b"\r\n.\r\n")
    assert r.reply().startswith("500 5.5.2 Line too long")
    assert r.cmd("QUIT").startswith("221")


def test_unwritable_spool_gives_452_and_keeps_nothing(server: Server, site: Path) -> None:
    import shutil

    deadline = time.monotonic() + 10
    while not (site / "queue/tmp").is_dir():  # the server makes its spool once it runs
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shutil.rmtree(site / "queue/tmp")
    (site / "queue/tmp").write_text("not a directory\n")  # root ignores permission bits
    try:
        with client(server.ports["mx"], RELAY_IP) as c:
            c.ehlo("x")
            c.mail("a@example.org")
            c.rcpt("neilb@inf.example.ac.uk")
            code, reply = c.data(MSG)
        assert (code, reply[:5]) == (452, b"4.3.1")
        # nothing queued, nothing half-written (a Spool object would mend queue/tmp itself)
        assert not any((site / "queue/active").iterdir())
        assert not any((site / "queue/msg").iterdir())
        assert "queue write failed" in server.log()
    finally:
        (site / "queue/tmp").unlink()
        (site / "queue/tmp").mkdir()
