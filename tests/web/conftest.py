"""Fixtures of the web tests: a real ``postroom serve`` with the web listener on port 0,
an SMTP sink (in a thread of its own, so tests stay plain functions) that every outside
address is routed to, a list with members, and accounts of every role.

    web          a Web: .url, .site, .server, .sink, .http() (a requests session), .mails_to()
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
import trustme

from tests.conftest import run
from tests.serve.test_reload import route_to
from tests.server import INBOUND_IP, Server, configure_site
from tests.sinks import Received, Sink
from tests.smtp.smtp_client import client

LIST = "physics@inf.example.ac.uk"
OTHER = "chem@inf.example.ac.uk"
MEMBERS = ["ann@example.net", "bob@example.org"]
PASSWORD = "correct horse battery staple"
ACCOUNTS = {  # login -> (email, site admin)
    "root": ("root@example.net", True),
    "olive": ("owner@example.net", False),      # owner of LIST
    "mo": ("mod@example.net", False),           # moderator of LIST
    "cher": ("chemowner@example.net", False),   # owner of OTHER only
}
BASE_URL = "http://lists.inf.example.ac.uk"  # in mail; tests follow the path to .url

WEB = f"""
[web]
enabled = true
address = "127.0.0.1"
port = 0
base_url = "{BASE_URL}"
signup_min_seconds = {{}}
"""


def wait_for(check: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class ThreadedSink:
    """tests.sinks.Sink in an event loop of its own thread."""

    def __init__(self) -> None:
        self.sink = Sink()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ThreadedSink:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sink.start(), self.loop).result(10)
        return self

    @property
    def port(self) -> int:
        return self.sink.port

    @property
    def messages(self) -> list[Received]:
        return self.sink.messages

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sink.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def parsed(m: Received) -> EmailMessage:
    msg = email.message_from_bytes(m.content, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def ok(*args: str, site: Path, input: str | None = None) -> str:
    r = run(*args, site=site, input=input)
    assert r.returncode == 0, r.stderr
    return r.stdout


@dataclass
class Web:
    site: Path
    server: Server
    sink: ThreadedSink
    url: str = ""
    sessions: list[requests.Session] = field(default_factory=list)

    def http(self) -> requests.Session:
        s = requests.Session()
        self.sessions.append(s)
        return s

    def get(self, path: str, s: requests.Session | None = None, **kw: object
            ) -> requests.Response:
        return (s or self.http()).get(self.url + path, timeout=30, **kw)  # type: ignore[arg-type]

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [parsed(m) for m in list(self.sink.messages) if address in m.rcpt_tos]

    def send(self, sender: str, rcpt: str, body: bytes) -> None:
        with client(self.server.ports["mx"], INBOUND_IP) as c:
            c.sendmail(sender, [rcpt], body)

    def login(self, login: str, password: str = PASSWORD) -> requests.Session:
        s = self.http()
        page = s.get(self.url + "/admin/login", timeout=30)
        r = s.post(self.url + "/admin/login", data={
            "login": login, "password": password, "csrf_token": csrf_of(page.text),
            "next": "/admin/"}, allow_redirects=False, timeout=30)
        assert r.status_code == 303, r.text
        return s


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def form_token_of(html: str) -> str:
    m = re.search(r'name="form_token" value="([0-9a-f.]+)"', html)
    assert m, "no form token in the page"
    return m.group(1)


def post(sender: str, subject: str, to: str = LIST, body: str = "Hello physics.") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{re.sub(r'[^A-Za-z0-9]', '.', subject)}@example.net>\r\n\r\n"
            f"{body}\r\n").encode()


def prepare(site: Path, sink_port: int, *, min_seconds: float = 1.0, extra: str = "") -> None:
    configure_site(site, trustme.CA(), extra=WEB.format(min_seconds) + extra)
    route_to(site, sink_port)
    ok("db", "upgrade", site=site)
    ok("lists", "create", LIST, "--owner", "owner@example.net", "--description",
       "Physics <b>talk</b>", site=site)
    ok("lists", "set", LIST, "moderators=mod@example.net", site=site)
    ok("lists", "create", OTHER, "--owner", "chemowner@example.net", site=site)
    ok("members", "add", LIST, *MEMBERS, site=site)
    for login, (address, admin) in ACCOUNTS.items():
        ok("web-admin", "add", login, "--email", address, *(["--site-admin"] if admin else []),
           "--password-stdin", site=site, input=PASSWORD + "\n")


@pytest.fixture(scope="session")
def session_sink() -> Iterator[ThreadedSink]:
    s = ThreadedSink().start()
    yield s
    s.stop()


@pytest.fixture
def sink(session_sink: ThreadedSink) -> ThreadedSink:
    """The session's sink, emptied for this test (the server of the last test is gone)."""
    session_sink.messages.clear()
    return session_sink


@pytest.fixture(scope="session")
def web_template(example_template: Path, tmp_path_factory: pytest.TempPathFactory,
                 session_sink: ThreadedSink) -> Path:
    """The example site prepared once: lists, members, accounts (each test copies it)."""
    d = tmp_path_factory.mktemp("web") / "site"
    shutil.copytree(example_template, d)
    prepare(d, session_sink.port)
    return d


def start(site: Path, sink: ThreadedSink, workers: int = 1) -> Web:
    server = Server(site, workers).start(timeout=60)
    web = Web(site, server, sink, url=f"http://127.0.0.1:{server.ports['web']}")
    wait_for(lambda: _up(web.url), timeout=60)
    return web


def _up(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=5).status_code == 200
    except requests.RequestException:  # the master's socket listens before the app is up
        return False


@pytest.fixture
def web_site(web_template: Path, tmp_path: Path) -> Path:
    d = tmp_path / "site"
    shutil.copytree(web_template, d)
    return d


@pytest.fixture
def web(web_site: Path, sink: ThreadedSink) -> Iterator[Web]:
    w = start(web_site, sink)
    yield w
    for s in w.sessions:
        s.close()
    w.server.stop()
