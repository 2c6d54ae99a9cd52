"""What the SMTP fuzz targets share: random client byte streams (commands, pipelined
transactions, DATA bodies, garbage) cut into random packets, and the judge of what the
server sent back.

The property a server's output must have:

- every line ends in CRLF and is a reply line: three digits, then a space, a dash or
  nothing (RFC 5321 4.2); the lines of a multi-line reply share its code;
- the first reply is the greeting (220, or a 421/554 refusal at connect);
- no reply is aiosmtpd's report of an exception it caught (``500 Error: (Type) ...``);
- the connection ends only after a closing reply: 221 (QUIT), 421, a 554 refusal at
  connect, or aiosmtpd's 502 for too many unrecognized commands; after ``220 Ready to
  start TLS`` nothing more is judged (the stream goes on in plain text, so the TLS
  handshake fails and the server may close without a word);
- it ends in time: every stream is followed by ``TERMINATOR`` (the end of any DATA, then
  QUIT), so a server still silent after ``ANSWER_TIMEOUT`` seconds hangs.
"""

from __future__ import annotations

import itertools
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import trustme
from hypothesis import strategies as st

from tests.fuzz.harness import Hang, Unhandled, require
from tests.server import INBOUND_IP, OUTSIDE_IP, RELAY_IP, configure_site

TERMINATOR = b"\r\n.\r\nQUIT\r\n"
ANSWER_TIMEOUT = 15.0
# small limits, so that fuzzing reaches them: 64 KiB messages, 4 KiB of header, 5 RCPTs
LIMITS = (("message_size = 52428800", "message_size = 65536\nheader_size = 4096"),
          ("recipients = 1000", "recipients = 5"))


def make_site(template: Path, dest: Path, refusing_port: int) -> Path:
    """The example site (``template``, from tests/conftest.py) copied to ``dest`` for
    fuzzing: port-0 listeners and the test networks (tests/server.py), a test
    certificate, the small LIMITS, and the example's outbox port in the mailertable
    replaced by ``refusing_port``, so that what is accepted stays deferred."""
    shutil.copytree(template, dest)
    configure_site(dest, trustme.CA())
    profile = dest / "postroom.toml"
    text = profile.read_text()
    for old, new in LIMITS:
        assert old in text, old
        text = text.replace(old, new)
    profile.write_text(text)
    mailertable = dest / "maps/mailertable"
    mailertable.write_text(mailertable.read_text().replace(":2526", f":{refusing_port}"))
    return dest

# findings reported and not yet fixed (their corpus inputs, corpus/smtp/, run as strict
# xfails); both SMTP targets count them and go on
KNOWN = (
)

# -- streams

_LOCAL = ["rt@inf.example.ac.uk", "root@inf.example.ac.uk", "postmaster@inf.example.ac.uk",
          "mchen@cogsci.example.ac.uk", "info@research.example.org", "neilb@inf.example.ac.uk",
          "sysman@inf.example.ac.uk", "nobody@inf.example.ac.uk", "bugs@cogsci.example.ac.uk",
          "RT+tag@INF.example.ac.uk", "postmaster"]
_REMOTE = ["someone@example.net", "a@staffmail.example.ac.uk", "x@[192.0.2.1]", "<>"]
_TRICKS = ['"user@other.example"', "@ourhost:user@other.example", "user%other.example@inf",
           "host!user@inf.example.ac.uk", "user@other.example%inf.example.ac.uk",
           "a@@inf.example.ac.uk", "user@inf.example.ac.uk.", "us\u00e9r@inf.example.ac.uk",
           "a" * 70 + "@inf.example.ac.uk", "\"a b\"@inf.example.ac.uk", "a@b@c", ""]
_JUNK_TEXT = st.text(st.one_of(st.sampled_from(list('<>@:%!"\\ ,.[]()=+\t')),
                               st.characters(codec="utf-8")), max_size=20)
# 8-bit bytes, UTF-8 or not (encoded back with surrogateescape, so sent as they are)
_EIGHT_BIT = st.builds(lambda b, d: b.decode("utf-8", "surrogateescape") + d,
                       st.binary(min_size=1, max_size=6),
                       st.sampled_from(["@example.org", "@inf.example.ac.uk", ""]))
ADDRESS = st.one_of(st.sampled_from(_LOCAL), st.sampled_from(_LOCAL), st.sampled_from(_REMOTE),
                    st.sampled_from(_TRICKS), _JUNK_TEXT, _EIGHT_BIT)
_MAIL_PARAM = st.sampled_from(["", "", " SIZE=100", " BODY=8BITMIME", " BODY=7BIT",
                               " SMTPUTF8", " RET=HDRS", " RET=FULL", " ENVID=q+2B1",
                               " RET=BOGUS", " SIZE=99999999", " SIZE=x", " AUTH=<>",
                               " ENVID=", " RET=FULL RET=HDRS", " FOO=bar", " BODY=8BITMIME"
                               " SMTPUTF8"])
_RCPT_PARAM = st.sampled_from(["", "", " NOTIFY=SUCCESS,FAILURE", " NOTIFY=NEVER",
                               " NOTIFY=DELAY", " ORCPT=rfc822;a@example.org", " NOTIFY=bogus",
                               " ORCPT=x", " NOTIFY=NEVER,SUCCESS", " FOO=1"])
_VERB = st.sampled_from(["EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "VRFY",
                         "EXPN", "HELP", "AUTH", "BDAT", "ehlo", "mail", "Rcpt", "XCLIENT",
                         "X", ""])
COMMAND = st.one_of(
    st.builds(lambda verb, h: f"{verb} {h}", st.sampled_from(["EHLO", "HELO", "ehlo"]),
              st.one_of(st.sampled_from(["fuzz.example", "[127.0.0.1]", ""]), _JUNK_TEXT)),
    st.builds(lambda sep, a, p: f"MAIL FROM:{sep}<{a}>{p}", st.sampled_from(["", " ", "  "]),
              ADDRESS, _MAIL_PARAM),
    st.builds(lambda a, p: f"RCPT TO:<{a}>{p}", ADDRESS, _RCPT_PARAM),
    st.builds(lambda a: f"MAIL FROM:{a}", _JUNK_TEXT),
    st.builds(lambda a: f"RCPT TO:{a}", _JUNK_TEXT),
    st.sampled_from(["DATA", "DATA x", "RSET", "NOOP", "NOOP x", "VRFY rt", "EXPN staff",
                     "HELP", "HELP MAIL", "AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH LOGIN",
                     "AUTH PLAIN", "AUTH CRAM-MD5", "BDAT 10 LAST", "MAIL", "RCPT",
                     "MAIL FROM:", "RCPT TO:", "EHLO", "HELO"]),
    st.builds(lambda v, a: f"{v} {a}", _VERB, _JUNK_TEXT),
)
RARE_COMMAND = st.sampled_from(["QUIT", "STARTTLS", "quit"])
EOL = st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r", b"", b"\r\r\n"])

_HEADER_LINE = st.one_of(
    st.sampled_from([b"Subject: fuzz", b"From: a@example.org", b"To: rt@inf.example.ac.uk",
                     b"Message-ID: <x@y>", b"Content-Type: text/plain; charset=utf-8",
                     b"X-Eight-Bit: \xff\xfe", b"Received: from x", b" folded", b"NoColon",
                     b"Subject: " + b"s" * 1200]),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")))
_BODY_LINE = st.one_of(
    st.sampled_from([b".", b"..", b".x", b"", b"MAIL FROM:<admin@inf.example.ac.uk>",
                     b"RCPT TO:<root@inf.example.ac.uk>", b"DATA", b"QUIT", b"\x00",
                     b"a\nb", b"a\rb", b"\r.\r", b"\n.\n"]),
    st.binary(max_size=40),
    st.sampled_from([997, 998, 999, 1000, 1200, 5000]).map(lambda n: b"z" * n))
_ENDING = st.sampled_from([b"\r\n.\r\n"] * 5 + [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r",
                                                b"", b"\r\n.", b"\r\n"])


@st.composite
def data_body(draw: st.DrawFn) -> bytes:
    """What a client sends after 354: headers, maybe a blank line, body lines, an ending
    (sometimes a false one, or none); now and then over the size limit."""
    eol = draw(st.sampled_from([b"\r\n"] * 4 + [b"\n"]))
    head = draw(st.lists(_HEADER_LINE, max_size=5))
    body = draw(st.lists(_BODY_LINE, max_size=8))
    blank = draw(st.sampled_from([eol, eol, b""]))
    big = b"b" * 79 + b"\r\n"
    oversize = big * draw(st.sampled_from([0] * 15 + [1000]))  # 81 kB, past 64 KiB
    return eol.join(head) + eol + blank + eol.join(body) + eol + oversize + draw(_ENDING)


@st.composite
def transaction(draw: st.DrawFn) -> bytes:
    """A pipelined transaction, mostly well formed: MAIL, RCPTs, DATA and its body."""
    rcpts = draw(st.lists(st.builds(lambda a, p: f"RCPT TO:<{a}>{p}", ADDRESS, _RCPT_PARAM),
                          min_size=0, max_size=7))
    lines = [f"MAIL FROM:<{draw(ADDRESS)}>{draw(_MAIL_PARAM)}", *rcpts, "DATA"]
    return b"".join(line.encode("utf-8", "surrogateescape") + b"\r\n" for line in lines) + \
        draw(data_body())


ITEM = st.one_of(
    st.builds(lambda c, eol: c.encode("utf-8", "surrogateescape") + eol, COMMAND, EOL),
    st.builds(lambda c, eol: c.encode("utf-8", "surrogateescape") + eol, COMMAND, EOL),
    transaction(), transaction(),
    st.builds(lambda c: c.encode() + b"\r\n", RARE_COMMAND),
    st.binary(max_size=50),
    st.sampled_from([b"x" * 1100 + b"\r\n", b"EHLO " + b"h" * 600 + b"\r\n", b"\r\n", b"\n",
                     b"\x00\r\n", b"\xff\xfe\r\n", b"\x16\x03\x01\x00\x05hello"]),
)


@dataclass(frozen=True)
class Session:
    """One client connection: where it comes from, which listener, what it sends."""

    source: str
    listener: str
    wait_greeting: bool
    pause: float        # seconds between packets, so that the server reads them apart
    chunks: tuple[bytes, ...]

    @property
    def stream(self) -> bytes:
        return b"".join(self.chunks)

    def __repr__(self) -> str:
        """Short enough to read: the stream with long runs of one byte collapsed, and the
        packet sizes."""
        shown = re.sub(rb"(.)\1{19,}", lambda m: b"<%d x %r>" % (len(m.group(0)), m.group(1)),
                       self.stream, flags=re.S)
        shown = re.sub(rb"([^\n]*\n)\1{3,}",
                       lambda m: b"<%d x %r>" % (len(m.group(0)) // len(m.group(1)), m.group(1)),
                       shown)
        sizes = [len(c) for c in self.chunks]
        return (f"Session(source={self.source!r}, listener={self.listener!r}, "
                f"wait_greeting={self.wait_greeting}, pause={self.pause}, "
                f"packets={sizes if len(sizes) <= 40 else len(sizes)}, stream={shown!r})")


@st.composite
def cut(draw: st.DrawFn, stream: bytes) -> tuple[bytes, ...]:
    """``stream`` in random packets: whole, in fixed sizes, or at random points."""
    how = draw(st.sampled_from(["whole", "fixed", "random", "random"]))
    if how == "whole" or len(stream) < 2:
        return (stream,)
    if how == "fixed":
        size = draw(st.sampled_from([1, 2, 3, 5, 7, 64, 512]))
        size = max(size, len(stream) // 40)  # at most 40 packets
        return tuple(stream[i:i + size] for i in range(0, len(stream), size))
    points = sorted(draw(st.sets(st.integers(1, len(stream) - 1), max_size=20)))
    edges = [0, *points, len(stream)]
    return tuple(stream[a:b] for a, b in itertools.pairwise(edges))


@st.composite
def sessions(draw: st.DrawFn, *, listeners: tuple[str, ...] = ("mx", "mx", "mx", "submission")
             ) -> Session:
    items = draw(st.lists(ITEM, min_size=1, max_size=8))
    if draw(st.integers(0, 3)) == 0:
        items.insert(0, b"EHLO fuzz.example\r\n")
    elif draw(st.booleans()):
        items.insert(0, b"HELO fuzz.example\r\n")
    stream = b"".join(items)
    return Session(
        source=draw(st.sampled_from([RELAY_IP] * 6 + [INBOUND_IP] * 3 + [OUTSIDE_IP])),
        listener=draw(st.sampled_from(listeners)),
        wait_greeting=draw(st.booleans()),
        pause=draw(st.sampled_from([0.0, 0.0, 0.001])),
        chunks=draw(cut(stream)))


def session_of(stream: bytes) -> Session:
    """A corpus stream, replayed from an internal client on mx in packets of 7 bytes."""
    return Session(RELAY_IP, "mx", True, 0.0,
                   tuple(stream[i:i + 7] for i in range(0, len(stream), 7)) or (b"",))


# -- the judge

_REPLY = re.compile(rb"([2-5][0-9][0-9])(?:([ -])(.*))?\Z", re.S)
_CAUGHT = re.compile(rb"(?:[245]\.\d{1,3}\.\d{1,3} )?Error: \(")
CLOSING = {b"221", b"421"}
STARTED_TLS = re.compile(rb"\r\n220[ -][^\r\n]*Ready to start TLS[^\r\n]*\r\n")


def judge(out: bytes, ending: str) -> None:
    """Raise a Finding unless ``out`` (all the server sent; ``ending`` as ``converse``
    says) has the property in the module docstring."""
    if ending == "open" and not out:
        raise Hang(f"no greeting in {ANSWER_TIMEOUT:g} s")
    require(out or ending == "reset",
            "the connection closed without a greeting" if ending == "eof" else "no greeting")
    if not out:
        return
    lines = out.split(b"\r\n")
    tail = lines.pop()
    replies: list[tuple[bytes, bytes]] = []  # (code, text of the last line)
    pending: bytes | None = None  # the code of an unfinished multi-line reply
    for n, line in enumerate(lines):
        m = _REPLY.match(line)
        require(m and b"\r" not in line and b"\n" not in line,
                f"line {n + 1} is no reply line: {line[:120]!r}")
        assert m is not None
        code, sep, text = m.group(1), m.group(2) or b" ", m.group(3) or b""
        require(pending is None or code == pending,
                f"line {n + 1}: code {code!r} inside a multi-line {pending!r} reply")
        if _CAUGHT.match(text):
            raise Unhandled(f"the server caught an exception: {line[:200]!r}")
        if sep == b"-":
            pending = code
            continue
        pending = None
        replies.append((code, text))
        if len(replies) == 1:
            require(code in (b"220", b"421", b"554"),
                    f"the greeting is {code.decode()}, not 220, 421 or 554")
        elif code == b"220" and b"TLS" in text:
            return  # STARTTLS: what follows is the TLS handshake
    if ending == "reset" and not replies:
        return
    require(replies, f"no complete reply in {out[:200]!r}")
    if ending == "reset":
        return  # the rest may be lost on the way
    require(tail == b"", f"the output ends inside a line: {tail[:120]!r}")
    require(pending is None, "the output ends inside a multi-line reply")
    if ending == "open":
        raise Hang(f"no end of the session {ANSWER_TIMEOUT:g} s after QUIT; last replies "
                   f"{replies[-3:]!r}")
    code, text = replies[-1]
    closing = code in CLOSING or (code == b"554" and len(replies) == 1) or \
        (code == b"502" and b"Too many unrecognized" in text)
    require(closing, f"the server closed after {code.decode()} {text[:80]!r}, not after "
            "221/421 (a reply lost, or a close without one)")


# -- a client on a plain socket (for the real server)

def converse(port: int, session: Session, *, timeout: float = ANSWER_TIMEOUT
             ) -> tuple[bytes, str]:
    """Send the session's packets then TERMINATOR, reading all along; return what the
    server sent and how the connection ended: "eof" (the server closed), "reset" (it
    closed with our data unread, so the kernel reset the connection: its last reply may
    be lost on the way, which is TCP and no fault of the server), "tls" (the server
    said "220 Ready to start TLS": the client's turn, so the session ends here) or
    "open" (still open ``timeout`` seconds after the end)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=(session.source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = bytearray()
    eof = False
    reset = tls = False

    def read(until: float) -> None:
        nonlocal eof, reset, tls
        while not eof:
            left = until - time.monotonic()
            if left > 0:
                sock.settimeout(left)
            else:
                sock.setblocking(False)
            try:
                data = sock.recv(65536)
            except (BlockingIOError, TimeoutError):
                return
            except ConnectionResetError:
                eof = reset = True
                return
            if not data:
                eof = True
                return
            out.extend(data)
            if STARTED_TLS.search(out):  # the client's turn: a TLS handshake
                eof = tls = True
                return

    try:
        if session.wait_greeting:
            deadline = time.monotonic() + timeout
            while not eof and b"\r\n" not in out and time.monotonic() < deadline:
                read(min(deadline, time.monotonic() + 0.05))
        for chunk in (*session.chunks, TERMINATOR):
            read(0.0)
            if eof:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                reset = True
                break
            if session.pause:
                time.sleep(session.pause)
        read(time.monotonic() + timeout)
    finally:
        sock.close()
    if tls:
        return bytes(out), "tls"
    return bytes(out), ("reset" if reset else "eof") if eof else "open"


def greets(port: int, timeout: float = 10.0) -> bytes:
    """A fresh connection's greeting (b"" if none came); then QUIT."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                      source_address=(RELAY_IP, 0)) as sock:
            data = b""
            deadline = time.monotonic() + timeout
            while b"\r\n" not in data and time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            sock.sendall(b"QUIT\r\n")
            return data
    except OSError:
        return b""
