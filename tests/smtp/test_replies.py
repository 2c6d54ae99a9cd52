"""What clients and admins see: AUTH without warnings (implicit TLS included), 421 replies
that name the host (in quiescent mode, and while draining for a stop), and the trace
line's reverse-DNS slot."""

from __future__ import annotations

import base64
import email
import email.policy
import logging
import signal
import smtplib
import ssl
import time
import warnings
from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from postroom.smtp.auth import login_of
from postroom.smtp.server import PostroomSMTP
from tests.conftest import run
from tests.server import INBOUND_IP, OUTSIDE_IP, RELAY_IP, Server
from tests.smtp.conftest import PASSWORD
from tests.smtp.inprocess import Conversation, serving
from tests.smtp.smtp_client import Raw, client, tls_context
from tests.smtp.test_intake import MSG, QUEUED, STAYS_QUEUED, load

HOST = "mail.inf.example.ac.uk"  # the example site's host name
QUIESCENT = f"421 4.3.2 {HOST} Service not available, closing transmission channel"
SHUTTING_DOWN = f"421 4.3.2 {HOST} Service shutting down, closing transmission channel"
AUTH_OK = "235 2.7.0 Authentication successful"
NEEDS_TLS = "538 5.7.11 Encryption required for requested authentication mechanism"
NOT_AVAILABLE = 421  # smtplib's code for the refusals above


# -- AUTH: nothing deprecated, no false "AUTH without TLS" ----------------------------------

class OneUser:
    """What PostroomSMTP asks of its handler (``postroom.smtp.handler.Handler`` in the
    server), with one user, alice; MAIL notes the login it sees."""

    draining = False

    def __init__(self) -> None:
        self.logins: list[str] = []

    def connect_reply(self, server: PostroomSMTP) -> str | None:
        return None

    def opened(self, server: PostroomSMTP) -> None:
        pass

    def closed(self, server: PostroomSMTP) -> None:
        pass

    def login_paused(self, server: PostroomSMTP) -> bool:
        return False

    async def authenticate(self, server: PostroomSMTP, creds: LoginPassword) -> AuthResult:
        if creds == (b"alice", b"secret"):
            return AuthResult(success=True, auth_data=LoginPassword(b"alice", b""))
        return AuthResult(success=False, handled=False)

    async def handle_MAIL(self, server: PostroomSMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        self.logins.append(login_of(session))
        envelope.mail_from = address
        return "250 2.1.0 Sender OK"


def _auth_plain(login: str, password: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{login}\0{password}".encode()).decode()


def _contexts(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    return server, tls_context(ca)


def _warnings_of(caught: list[warnings.WarningMessage],
                 caplog: pytest.LogCaptureFixture) -> list[str]:
    return ([f"{w.category.__name__}: {w.message}" for w in caught
             if not issubclass(w.category, ResourceWarning)]
            + [f"log {r.name}: {r.getMessage()}" for r in caplog.records
               if r.levelno >= logging.WARNING])


@pytest.mark.parametrize("auth_require_tls", [True, False])
async def test_auth_over_implicit_tls_warns_nothing(
        ca: trustme.CA, caplog: pytest.LogCaptureFixture, auth_require_tls: bool) -> None:
    """Port 465: AUTH is offered and taken on the TLS the connection started with. No
    "AUTH without TLS" warning is given, and no Session.login_data deprecation, whatever
    intake passes as ``auth_require_tls``."""
    server_tls, client_tls = _contexts(ca)
    handler = OneUser()

    def session() -> PostroomSMTP:
        return PostroomSMTP(handler, hostname="mail.test", auth_required=True,
                            auth_require_tls=auth_require_tls, implicit_tls=True)

    with warnings.catch_warnings(record=True) as caught, \
            caplog.at_level(logging.INFO, logger="mail.log"):
        warnings.simplefilter("always")
        async with serving(session, tls=server_tls) as port:
            c = await Conversation.open(port, tls=client_tls)
            assert (await c.reply()).startswith("220 mail.test ")
            assert "250-AUTH LOGIN PLAIN" in (await c.cmd("EHLO laptop")).split("\n")
            assert await c.cmd(_auth_plain("alice", "secret")) == AUTH_OK
            assert await c.cmd("MAIL FROM:<alice@example.org>") == "250 2.1.0 Sender OK"
            await c.close()
    assert handler.logins == ["alice"]
    assert _warnings_of(caught, caplog) == []


@pytest.mark.parametrize(("require_starttls", "refusal"), [
    (True, "530 5.7.0 Must issue a STARTTLS command first"),  # as on postroom's 587
    (False, NEEDS_TLS),
])
async def test_auth_waits_for_starttls_and_warns_nothing(
        ca: trustme.CA, caplog: pytest.LogCaptureFixture, require_starttls: bool,
        refusal: str) -> None:
    """Port 587: AUTH before STARTTLS is refused (and not offered); after it, it works."""
    server_tls, client_tls = _contexts(ca)
    handler = OneUser()

    def session() -> PostroomSMTP:
        return PostroomSMTP(handler, hostname="mail.test", auth_required=True,
                            tls_context=server_tls, require_starttls=require_starttls)

    with warnings.catch_warnings(record=True) as caught, \
            caplog.at_level(logging.INFO, logger="mail.log"):
        warnings.simplefilter("always")
        async with serving(session) as port:
            c = await Conversation.open(port)
            await c.reply()
            ehlo = (await c.cmd("EHLO laptop")).split("\n")
            assert "250-STARTTLS" in ehlo and not any("AUTH" in x for x in ehlo)
            assert await c.cmd(_auth_plain("alice", "secret")) == refusal
            assert (await c.cmd("STARTTLS")).startswith("220")
            await c.starttls(client_tls)
            assert "250-AUTH LOGIN PLAIN" in (await c.cmd("EHLO laptop")).split("\n")
            assert await c.cmd(_auth_plain("alice", "secret")) == AUTH_OK
            assert await c.cmd("MAIL FROM:<alice@example.org>") == "250 2.1.0 Sender OK"
            await c.close()
    assert handler.logins == ["alice"]
    assert _warnings_of(caught, caplog) == []


def test_served_auth_leaves_no_warning_in_the_output(server: Server, ca: trustme.CA) -> None:
    """The same through a running ``postroom serve``. Its stderr is where aiosmtpd's
    warnings went: one "Session.login_data is deprecated" per AUTH, MAIL and DATA, and
    "auth_required == True but auth_require_tls == False" per connection on 465."""
    with client(server.ports["submissions"], OUTSIDE_IP, tls=True, ca=ca) as c:
        c.ehlo("laptop")
        c.login("alice", PASSWORD)
        assert c.sendmail("alice@inf.example.ac.uk", ["x@gmail.example.com"], MSG) == {}
    with client(server.ports["submission"], OUTSIDE_IP) as c:
        c.starttls(context=tls_context(ca))
        c.ehlo("laptop")
        c.login("alice", PASSWORD)
        assert c.sendmail("a.smith@inf.example.ac.uk", ["x@gmail.example.com"], MSG) == {}
    assert server.stop() == 0
    time.sleep(0.2)  # the last lines of output
    output = "".join(server.output)
    for text in ("deprecated", "auth_require_tls", "Requiring AUTH", "Warning"):
        assert text not in output, output


# -- 421 names the host ----------------------------------------------------------------------

def test_quiescent_421_names_the_host(server: Server, site: Path) -> None:
    """RFC 5321 4.2.3: "421 <domain> Service not available, closing transmission
    channel", at connect and to a command of a session opened before."""
    open_before = Raw(server.ports["mx"], INBOUND_IP)
    open_before.reply()
    assert open_before.cmd("EHLO relay.example.net").startswith("250")
    assert run("quiesce", "--reason", "test", site=site).returncode == 0
    try:
        with pytest.raises(smtplib.SMTPConnectError) as e:
            client(server.ports["mx"], INBOUND_IP)
        assert (e.value.smtp_code, e.value.smtp_error) == (
            NOT_AVAILABLE, QUIESCENT[4:].encode())
        time.sleep(0.3)  # the flag file is looked at every 0.1 s within a session
        assert open_before.cmd("MAIL FROM:<a@example.net>") == QUIESCENT
    finally:
        open_before.close()
        assert run("resume", site=site).returncode == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_draining_server_greets_new_clients_with_421(site: Path, workers: int) -> None:
    """After SIGTERM: an open transaction finishes, an idle session is told 421, and so
    is a client that connects during the drain. It is not left without a greeting in the
    listen queue, to be dropped later."""
    s = Server(site, workers).start()
    try:
        busy = Raw(s.ports["mx"], RELAY_IP)
        busy.reply()
        busy.cmd("EHLO x")
        assert busy.cmd("MAIL FROM:<a@example.org>").startswith("250")
        assert busy.cmd("RCPT TO:<rt@inf.example.ac.uk>").startswith("250")
        idle = Raw(s.ports["mx"], RELAY_IP)
        assert idle.reply().startswith("220")
        s.signal(signal.SIGTERM)
        assert idle.reply() == SHUTTING_DOWN  # the drain has begun
        assert idle.closed()
        time.sleep(0.3)  # every intake process has had the signal
        late = Raw(s.ports["mx"], RELAY_IP)
        assert late.reply() == SHUTTING_DOWN
        assert late.closed()
        assert busy.cmd("DATA").startswith("354")
        busy.send(MSG + b".\r\n")
        assert busy.reply().startswith("250 2.0.0 Ok: queued as")
        assert busy.closed()
        assert s.proc is not None and s.proc.wait(20) == 0
    finally:
        s.stop()


# -- Received: the reverse-DNS slot ------------------------------------------------------------

def test_received_puts_no_helo_name_in_the_reverse_dns_slot(server: Server,
                                                             site: Path) -> None:
    """``from HELO (REVERSE-NAME [ADDR])``: no reverse lookup is made, so the name is
    "unknown", never the name the client gave in HELO."""
    with client(server.ports["mx"], INBOUND_IP) as c:
        c.ehlo("relay.example.net")
        c.mail("sender@example.net")
        c.rcpt(STAYS_QUEUED)
        code, reply = c.data(MSG)
    assert code == 250
    qid = QUEUED.search(reply.decode()).group(1)  # type: ignore[union-attr]
    env, data = load(site, qid)
    received = email.message_from_bytes(data, policy=email.policy.SMTP)["Received"]
    assert received.startswith(f"from relay.example.net (unknown [{INBOUND_IP}])")
    assert env.helo == "relay.example.net" and env.client_name == ""
