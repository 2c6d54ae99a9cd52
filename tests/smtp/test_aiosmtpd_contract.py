"""What postroom.smtp.adapter and postroom.smtp.server take from aiosmtpd 1.4.6.

These tests fail when aiosmtpd changes under postroom. That covers the methods
PostroomSMTP overrides or calls, the code the adapter copies, the reply texts it copies or
rewords, and the state SMTP.__init__ builds. They also show that other aiosmtpd servers in
the process run aiosmtpd as shipped. When one fails after an upgrade, read the new aiosmtpd
code at that point, update adapter.py or server.py, then update the expectation here.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import collections
import hashlib
import inspect
import logging
import socket
import ssl
import sys
import textwrap
from typing import Any

import aiosmtpd
import aiosmtpd.smtp
import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from postroom.smtp import adapter, server
from postroom.smtp.adapter import (
    AUTH_INVALID,
    AUTH_NEEDS_TLS,
    AUTH_SUCCESS,
    MAIL_TOO_BIG,
    REWORD,
    SUPPORTED_AIOSMTPD,
    AdaptedSMTP,
    UnsupportedAiosmtpd,
    check_aiosmtpd,
)
from postroom.smtp.server import PostroomSMTP
from tests.smtp.inprocess import Conversation, serving
from tests.smtp.test_replies import OneUser

# -- the version ---------------------------------------------------------------------------


def test_the_supported_version_is_installed() -> None:
    assert aiosmtpd.__version__ == SUPPORTED_AIOSMTPD
    check_aiosmtpd()


def test_another_version_is_refused_naming_the_supported_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiosmtpd, "__version__", "1.5.0")
    with pytest.raises(UnsupportedAiosmtpd) as e:
        check_aiosmtpd()
    assert "supports aiosmtpd 1.4.6 only, and aiosmtpd 1.5.0 is installed" in str(e.value)
    assert "install aiosmtpd==1.4.6" in str(e.value)
    with pytest.raises(UnsupportedAiosmtpd):  # a session is never made with it either
        PostroomSMTP(_Hooks(), hostname="mail.test")


# -- aiosmtpd's methods that postroom overrides or calls -----------------------------------

def _plain(func: Any) -> str:
    """A signature without annotations (their repr differs between Python versions)."""
    sig = inspect.signature(func)
    return str(sig.replace(
        parameters=[p.replace(annotation=inspect.Parameter.empty)
                    for p in sig.parameters.values()],
        return_annotation=inspect.Signature.empty))


INIT = ("(self, handler, *, data_size_limit=33554432, enable_SMTPUTF8=False, "
        "decode_data=False, hostname=None, ident=None, tls_context=None, "
        "require_starttls=False, timeout=300, auth_required=False, auth_require_tls=True, "
        "auth_exclude_mechanism=None, auth_callback=None, command_call_limit=None, "
        "authenticator=None, proxy_protocol_timeout=None, loop=None)")
OVERRIDDEN = {
    "__init__": INIT,
    "_handle_client": "(self)",
    "_timeout_cb": "(self)",
    "_reset_timeout": "(self, duration=None)",
    "_drain_helper": "(self)",
    "push": "(self, status)",
    "handle_exception": "(self, error)",
    "_getaddr": "(self, arg)",
    "smtp_EHLO": "(self, hostname)",
    "smtp_MAIL": "(self, arg)",
    "smtp_RCPT": "(self, arg)",
    "smtp_DATA": "(self, arg)",
    "smtp_AUTH": "(self, arg)",
    "auth_PLAIN": "(self, _, args)",
    "auth_LOGIN": "(self, _, args)",
}
CALLED = {
    "check_helo_needed": "(self, helo='HELO')",
    "check_auth_needed": "(self, caller_method)",
    "_call_handler_hook": "(self, command, *args)",
    "_set_post_data_state": "(self)",
    "_cb_client_connected": "(self, reader, writer)",
    "challenge_auth": "(self, challenge, encode_to_b64=True, log_client_response=False)",
}


def test_overridden_methods_are_the_ones_listed() -> None:
    """A new override of an aiosmtpd method needs its line in OVERRIDDEN."""
    overrides = {name for cls in (AdaptedSMTP, PostroomSMTP)
                 for name, value in vars(cls).items()
                 if inspect.isfunction(value) and hasattr(SMTP, name)}
    assert overrides == set(OVERRIDDEN)


@pytest.mark.parametrize(("name", "expected"), [*OVERRIDDEN.items(), *CALLED.items()])
def test_aiosmtpd_methods_keep_their_signatures(name: str, expected: str) -> None:
    assert _plain(getattr(SMTP, name)) == expected


def test_the_adapter_takes_what_aiosmtpd_takes() -> None:
    assert _plain(AdaptedSMTP.__init__) == INIT.replace(
        ", loop=None)", ", loop=None, implicit_tls=False, line_length=998)")


# The adapter copies these methods statement for statement (see adapter.py and
# PostroomSMTP.smtp_DATA). A change in them is a change postroom has not seen.
COPIED = {
    "__init__": "8a9ca80f23ad9bf273e58e284170e9f919dc6269b280ca0624ac0603a8ad3604",
    "smtp_AUTH": "79078b308377ac485368dfe255ad6d84581da9696acfe55d973a18e2d41f9c5c",
    "smtp_DATA": "3a33f30d3fd6d02f39c7d78a08288bffea9170525b62e2161568041ae7e018df",
}


@pytest.mark.parametrize(("name", "digest"), COPIED.items())
def test_copied_aiosmtpd_code_is_unchanged(name: str, digest: str) -> None:
    source = inspect.getsource(getattr(SMTP, name))
    assert hashlib.sha256(source.encode()).hexdigest() == digest, (
        f"aiosmtpd's SMTP.{name} changed: compare it with its copy in postroom")


# -- reply texts -----------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "text"), [
    ("smtp_AUTH", AUTH_SUCCESS),
    ("smtp_AUTH", AUTH_INVALID),
    ("smtp_AUTH", AUTH_NEEDS_TLS),
    ("smtp_MAIL", MAIL_TOO_BIG),
    ("smtp_DATA", server.DATA_NEEDS_RCPT),
    ("smtp_DATA", server.DATA_SYNTAX),
    ("smtp_DATA", server.DATA_GO_AHEAD),
])
def test_copied_reply_texts_are_aiosmtpds(method: str, text: str) -> None:
    assert text in _strings(getattr(SMTP, method))


def _strings(func: Any) -> set[str]:
    """The string literals of a function (adjacent literals joined, as Python joins them)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


class _Hooks:
    """A handler for plain aiosmtpd servers: accepts anyone, one user for AUTH."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


def _authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                   creds: Any) -> AuthResult:
    ok = isinstance(creds, LoginPassword) and creds == (b"alice", b"secret")
    return AuthResult(success=ok, handled=False, auth_data=creds)


def _plain_auth(login: str, password: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{login}\0{password}".encode()).decode()


async def test_aiosmtpd_sends_the_texts_postroom_relies_on() -> None:
    """What a plain aiosmtpd server says, over a socket: the replies postroom's adapter
    expects (and rewords) are still aiosmtpd's."""
    def factory() -> SMTP:
        return SMTP(_Hooks(), hostname="sink.test", data_size_limit=100,
                    auth_require_tls=False, authenticator=_authenticator)

    async with serving(factory) as port:
        c = await Conversation.open(port)
        await c.reply()
        await c.cmd("EHLO client.test")
        assert await c.cmd("MAIL FROM:<a@example.org> SIZE=1000") == MAIL_TOO_BIG
        assert await c.cmd(_plain_auth("alice", "wrong")) == AUTH_INVALID
        assert await c.cmd(_plain_auth("alice", "secret")) == AUTH_SUCCESS
        await c.close()

    def tls_required() -> SMTP:
        return SMTP(_Hooks(), hostname="sink.test", authenticator=_authenticator)

    async with serving(tls_required) as port:
        c = await Conversation.open(port)
        await c.reply()
        await c.cmd("EHLO client.test")
        assert await c.cmd(_plain_auth("alice", "secret")) == AUTH_NEEDS_TLS
        await c.close()


def test_rewordings_start_from_aiosmtpd_texts() -> None:
    assert set(REWORD) == {MAIL_TOO_BIG}


# -- the state a session starts with -------------------------------------------------------

def _state(obj: SMTP, names: Any) -> dict[str, Any]:
    """The attributes ``names`` of a session (in its dict or its slots), comparable across
    two instances: methods by name, objects made per instance by type."""
    out: dict[str, Any] = {}
    for key in names:
        value = getattr(obj, key)
        if key == "_auth_methods":
            value = {k: (v.method.__name__, v.is_builtin) for k, v in value.items()}
        elif key == "_smtp_methods":
            value = {k: v.__name__ for k, v in value.items()}
        elif key == "_handle_hooks":
            value = {k: v.__func__ for k, v in value.items()}
        elif key in ("_strong_reader", "_stream_reader_wr", "_closed", "_client_connected_cb"):
            value = type(value)
        elif key == "_drain_waiters":  # made when a write first waits (see the adapter)
            value = list(value)
        out[key] = value
    return out


class _Handler:
    """Hooks and a mechanism of the kinds aiosmtpd scans a handler for."""

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        return "250 OK"

    async def auth_XTOKEN__V2(self, server: SMTP, args: list[str]) -> AuthResult:
        return AuthResult(success=False)


@pytest.mark.parametrize("kwargs", [
    {},
    {"hostname": "mail.test", "ident": "postroom", "data_size_limit": 1000,
     "enable_SMTPUTF8": True, "timeout": 30, "auth_required": True,
     "auth_exclude_mechanism": ["LOGIN"], "command_call_limit": {"*": 5, "RCPT": 100},
     "proxy_protocol_timeout": 5},
    {"tls_context": ssl.create_default_context(ssl.Purpose.CLIENT_AUTH),
     "require_starttls": True, "command_call_limit": 7, "authenticator": _authenticator},
])
async def test_a_session_starts_as_aiosmtpd_would_start_it(kwargs: dict[str, Any]) -> None:
    handler = _Handler()
    aiosmtpds = SMTP(handler, **kwargs)
    adapted = AdaptedSMTP(handler, **kwargs)
    theirs = _state(aiosmtpds, vars(aiosmtpds))
    assert _state(adapted, theirs) == theirs
    assert "XTOKEN-V2" in theirs["_auth_methods"]
    assert adapted.implicit_tls is False
    assert adapted.line_length_limit == 998 + 2  # per instance; aiosmtpd's is a class's
    assert adapted._ehlo_lines is None
    assert vars(adapted) == {}  # all of it in slots: no dict per session


async def test_a_whole_session_keeps_its_state_in_slots(ca: trustme.CA) -> None:
    """STARTTLS, AUTH and a transaction set nothing outside the slots: an attribute that
    aiosmtpd (or postroom) starts to set needs its name in ``__slots__``, or every
    connection pays for a dict again."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)
    client_tls = ssl.create_default_context(cafile=None)
    ca.configure_trust(client_tls)
    made: list[PostroomSMTP] = []

    def session() -> PostroomSMTP:
        made.append(PostroomSMTP(OneUser(), hostname="mail.test",
                                 tls_context=server_tls))
        return made[-1]

    async with serving(session) as port:
        c = await Conversation.open(port)
        await c.reply()
        await c.cmd("EHLO client.test")
        assert (await c.cmd("STARTTLS")).startswith("220")
        await c.starttls(client_tls)
        await c.cmd("EHLO client.test")
        assert await c.cmd(_plain_auth("alice", "secret")) == AUTH_SUCCESS
        assert (await c.cmd("MAIL FROM:<a@example.org> RET=HDRS")).startswith("250")
        assert (await c.cmd("RCPT TO:<b@example.org> NOTIFY=NEVER")).startswith("250")
        assert (await c.cmd("DATA")).startswith("354")
        assert await c.cmd("Subject: x\r\n\r\nbody\r\n.") == "250 2.0.0 OK"
        assert (await c.cmd("RSET")).startswith("250")
        assert (await c.cmd("QUIT")).startswith("221")
        await c.close()
    assert len(made) == 1
    assert vars(made[0]) == {}


async def test_replies_wait_for_a_client_that_does_not_read() -> None:
    """Replies to a pipelining client that stops reading fill the socket; the session
    waits for it to drain (asyncio's drain waiters, which the adapter makes on first
    use), and every reply arrives once the client reads."""
    count = 3000
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # inherited on accept
    listener.bind(("127.0.0.1", 0))
    made: list[PostroomSMTP] = []

    def session() -> PostroomSMTP:
        made.append(PostroomSMTP(OneUser(), hostname="mail.test"))
        return made[-1]

    server = await asyncio.get_running_loop().create_server(session, sock=listener)
    try:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listener.getsockname())
        reader, writer = await asyncio.open_connection(sock=client)
        writer.write(b"EHLO client.test\r\n" * count)
        await asyncio.sleep(1)  # the server writes until the socket and its buffer fill
        data = b""
        while data.count(b"250 ") < count:
            chunk = await asyncio.wait_for(reader.read(1 << 16), 10)
            assert chunk, f"closed after {data.count(b'250 ')} replies"
            data += chunk
        assert len(data) > 100_000  # more than the socket and asyncio's buffer hold
        assert isinstance(made[0]._drain_waiters, collections.deque)  # it did wait
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_implicit_tls_counts_as_tls() -> None:
    with pytest.warns(UserWarning, match="Requiring AUTH while not requiring TLS"):
        SMTP(_Handler(), auth_required=True, auth_require_tls=False)
    for require_tls in (True, False):
        s = AdaptedSMTP(_Handler(), auth_required=True, auth_require_tls=require_tls,
                        implicit_tls=True)
        assert s.encrypted
        assert not s._auth_require_tls  # aiosmtpd: "wait for STARTTLS before AUTH"


# -- nothing outside PostroomSMTP is changed -----------------------------------------------

async def test_aiosmtpd_module_is_left_as_shipped() -> None:
    PostroomSMTP(_Hooks(), hostname="mail.test")  # a session made, as intake makes one
    module = vars(aiosmtpd.smtp)
    assert module["inspect"] is inspect
    assert "dir" not in module  # the builtin, not a stand-in
    assert module["sanitized_log"].__code__.co_filename == aiosmtpd.smtp.__file__
    assert sys.modules["aiosmtpd.smtp"] is aiosmtpd.smtp
    assert not [name for name, value in module.items()
                if getattr(value, "__module__", "").startswith("postroom")]
    assert adapter.__name__ in sys.modules


class _InstanceHooks:
    """A handler whose hook is set on the instance: seen by aiosmtpd's own scans (and not
    by the adapter's, which look at the class)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

        async def handle_RCPT(server: SMTP, session: Session, envelope: Envelope,
                              address: str, options: list[str]) -> str:
            self.seen.append(address)
            return "550 5.1.1 No such user here"

        self.handle_RCPT = handle_RCPT


async def test_a_plain_aiosmtpd_server_is_unaffected(caplog: pytest.LogCaptureFixture) -> None:
    PostroomSMTP(_Hooks(), hostname="mail.test")
    handler = _InstanceHooks()
    async with serving(lambda: SMTP(handler, hostname="sink.test")) as port:
        c = await Conversation.open(port)
        assert (await c.reply()).startswith("220 sink.test ")
        assert (await c.cmd("EHLO client.test")).startswith("250-sink.test\n")
        assert await c.cmd("MAIL FROM:<a@example.org>") == "250 OK"
        assert await c.cmd("RCPT TO:<b@example.org>") == "550 5.1.1 No such user here"
        assert handler.seen == ["b@example.org"]
        with caplog.at_level(logging.DEBUG, logger="mail.log"):
            assert await c.cmd("NOOP") == "250 OK"  # no enhanced code added: not ours
            await c.cmd("AUTH PLAIN c2VjcmV0")
        await c.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any("'NOOP'" in line for line in lines)
    assert any("AUTH PLAIN ********" in line for line in lines)  # aiosmtpd's masking
    assert not any("c2VjcmV0" in line for line in lines)


async def test_an_unexpected_error_gives_a_generic_temporary_reply() -> None:
    """A bug in a command hook is logged with its traceback; the client hears 451 with no
    exception text (it retries; nothing of the server's insides leaks)."""
    server = AdaptedSMTP.__new__(AdaptedSMTP)
    server.session = None
    reply = await server.handle_exception(KeyError("secret detail"))
    assert reply == "451 4.3.0 Error: internal error; try again later"
    assert "secret" not in reply
