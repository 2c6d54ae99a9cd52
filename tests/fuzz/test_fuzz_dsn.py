"""Fuzz targets ``dsn`` and ``dsn_fields``: ``postroom.queue.dsn.build``.

``dsn``: arbitrary message bytes (random headers, bad encodings, huge lines, no header/body
separator, MIME boundaries of its own) with any mix of notices (failed, delayed, delivered,
relayed; RET=FULL/HDRS). ``dsn_fields``: the same with the report's text fields as the
world can make them: a remote server's reply (bytes decoded as the SMTP client decodes
them, with surrogateescape), an 8-bit envelope sender or recipient (aiosmtpd decodes
SMTPUTF8 arguments the same way).

The property: build returns bytes that ``email.message_from_bytes`` parses as
multipart/report (report-type=delivery-status) whose second part is message/delivery-status
with a Reporting-MTA block and one block per notice; build never raises."""

from __future__ import annotations

import email
import email.message
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom.delivery.smtp.chat import parse_reply
from postroom.envelope import Delivery, Envelope, RcptState, Recipient
from postroom.queue import dsn
from tests.fuzz.harness import (
    Target,
    corpus_examples,
    corpus_params,
    fuzz_settings,
    require,
)

MESSAGES = Target("dsn", hang_after=2.0)
FIELDS = Target("dsn_fields", hang_after=2.0)
T0 = 1_800_000_000.0
HOST = "mail.inf.example.ac.uk"
QUEUE_ID = "4ZxYq1Bc2dF3"
BOUNDARY = f"{QUEUE_ID}.{int(T0)}/{HOST}"

# -- messages

_HEADER_NAME = st.one_of(
    st.sampled_from([b"Subject", b"From", b"To", b"Content-Type", b"Content-Transfer-Encoding",
                     b"MIME-Version", b"Message-ID", b"Received", b"X-Long", b"Date", b""]),
    st.binary(max_size=12))
_HEADER_VALUE = st.one_of(
    st.sampled_from([b"=?utf-8?b?w6k=?=", b"=?utf-8?q?=C3?=", b"=?bogus?x?zz?=",
                     b'multipart/mixed; boundary="b"', b"multipart/report; boundary=" +
                     BOUNDARY.encode(), b"text/plain; charset=nonexistent", b"base64",
                     b"\xff\xfe", b"\xc3(", b"a\r\n\tfolded", b"a\r\n\r\n", b""]),
    st.binary(max_size=40),
    st.integers(990, 20_000).map(lambda n: b"x" * n))  # long lines
_HEADER = st.builds(lambda n, sep, v: n + sep + v, _HEADER_NAME,
                    st.sampled_from([b": ", b":", b" : ", b""]), _HEADER_VALUE)
_BODY_LINE = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"--b", b"--b--", b"--" + BOUNDARY.encode(),
                     b"--" + BOUNDARY.encode() + b"--", b".", b"..", b"From x",
                     b"Content-Type: message/delivery-status", b"\x00", b"\r"]),
    st.integers(990, 70_000).map(lambda n: b"y" * n))
MESSAGE = st.one_of(
    st.builds(lambda head, eol, sep, body: eol.join(head) + sep + eol.join(body),
              st.lists(_HEADER, max_size=8), st.sampled_from([b"\r\n", b"\n", b"\r"]),
              st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\n", b"", b"\r\n\r\n\r\n"]),
              st.lists(_BODY_LINE, max_size=8)),
    st.binary(max_size=300),
    st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\n", b"no separator at all"]))

# -- envelopes and notices


def _delivery(state: RcptState, mailer: str, text: str, status: str, remote: str,
              user: str) -> Delivery:
    return Delivery(mailer, "mx.example.org", user, user, state=state, tries=1,
                    last_attempt=T0 + 60, last_error=text, status=status, remote_mta=remote)


_ACTIONS = {dsn.FAILED: RcptState.FAILED, dsn.DELAYED: RcptState.DEFERRED,
            dsn.DELIVERED: RcptState.SENT, dsn.RELAYED: RcptState.SENT}


@dataclass(frozen=True)
class Report:
    """Everything build() is given besides the message."""

    sender: str
    ret: str | None
    envid: str | None
    recipients: tuple[tuple[str, str | None, str, str, str, str, str], ...]
    # (address, orcpt, action, mailer, last_error, status, remote_mta)
    lifetime: float

    def build(self, message: bytes) -> bytes:
        recipients, notices = [], []
        for address, orcpt, action, mailer, text, status, remote in self.recipients:
            d = _delivery(_ACTIONS[action], mailer, text, status, remote, address)
            r = Recipient(address, [d], orcpt=orcpt, notify=None)
            recipients.append(r)
            notices.append(dsn.Notice(r, d, action))
        env = Envelope(self.sender, recipients, T0, id=QUEUE_ID, ret=self.ret,
                       envid=self.envid, size=len(message))
        return dsn.build(env, notices, message, hostname=HOST,
                         postmaster="postmaster@inf.example.ac.uk", now=T0 + 3600,
                         lifetime=self.lifetime)


# ENVID and ORCPT as intake lets them in (xtext, smtp/server.py)
_XTEXT = st.from_regex(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2}){1,30}", fullmatch=True)


def _report(text: st.SearchStrategy[str], address: st.SearchStrategy[str]
            ) -> st.SearchStrategy[Report]:
    """``text``: the delivery's last reply; ``address``: sender and recipients."""
    recipient = st.tuples(
        address, st.one_of(st.none(), st.just("rfc822;bob@example.org"),
                           _XTEXT.map("rfc822;".__add__)),
        st.sampled_from(sorted(_ACTIONS)), st.sampled_from(["esmtp", "relay", "local", "prog"]),
        text, st.sampled_from(["", "5.1.1", "4.4.1", "2.0.0"]),
        st.sampled_from(["", "mx.example.org [192.0.2.1]", "[192.0.2.1]"]))
    return st.builds(Report, address, st.sampled_from([None, "FULL", "HDRS"]),
                     st.one_of(st.none(), st.just("QID+2B1"), _XTEXT),
                     st.lists(recipient, min_size=1, max_size=3).map(tuple),
                     st.sampled_from([0.0, 5 * 86400.0]))


_PLAIN_TEXT = st.sampled_from(["550 5.1.1 No such user", "451 4.4.1 Connection refused",
                               "250 2.0.0 Ok: queued as X", ""])
REPORTS = _report(_PLAIN_TEXT, st.sampled_from(["rt@inf.example.ac.uk", "a@example.org"]))
# what the world can put there: a remote reply's text as postroom's SMTP client keeps it
# (lines decoded with surrogateescape, delivery/smtp/chat.py, then parse_reply), and 8-bit
# addresses decoded as aiosmtpd decodes command arguments (a command line holds no CR/LF)
_WIRE_TEXT = st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape"))


def _as_client_keeps(code: int, lines: list[bytes]) -> str:
    text = "\n".join(x.strip(b" \t").decode("utf-8", "surrogateescape") for x in lines)
    status, words = parse_reply(code, text)
    return f"{code} {status} {words}".rstrip()


_WIRE_REPLY = st.builds(_as_client_keeps, st.sampled_from([550, 451, 554, 421]),
                        st.lists(st.binary(max_size=30).map(
                            lambda b: b.replace(b"\n", b"")), min_size=1, max_size=3))
_LINE_TEXT = st.binary(max_size=20).map(
    lambda b: b.translate(None, b"\r\n").decode("utf-8", "surrogateescape"))
_WIRE_ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}",
                          _LINE_TEXT.filter(bool), st.sampled_from(["example.org", "é.example"]))
WIRE_REPORTS = _report(st.one_of(_WIRE_REPLY, _PLAIN_TEXT),
                       st.one_of(_WIRE_ADDRESS, st.just("a@example.org")))

# -- the property


def check(report: Report, message: bytes) -> None:
    out = report.build(message)
    require(isinstance(out, bytes), f"build returned {type(out).__name__}")
    msg = email.message_from_bytes(out)
    require(msg.get_content_type() == "multipart/report",
            f"DSN is {msg.get_content_type()}, not multipart/report")
    require(msg.get_param("report-type") == "delivery-status",
            f"report-type is {msg.get_param('report-type')!r}")
    parts = msg.get_payload()
    require(isinstance(parts, list) and len(parts) >= 2, f"DSN has parts {parts!r:.200}")
    assert isinstance(parts, list)
    status = parts[1]
    require(isinstance(status, email.message.Message)
            and status.get_content_type() == "message/delivery-status",
            f"second part is {getattr(status, 'get_content_type', lambda: status)()}")
    assert isinstance(status, email.message.Message)
    blocks = status.get_payload()
    require(isinstance(blocks, list) and len(blocks) == 1 + len(report.recipients),
            f"{len(blocks) if isinstance(blocks, list) else blocks!r} delivery-status "
            f"blocks for {len(report.recipients)} notices")
    assert isinstance(blocks, list)
    require("Reporting-MTA" in blocks[0], "no Reporting-MTA in the first block")
    for block in blocks[1:]:
        assert isinstance(block, email.message.Message)
        require(all(k in block for k in ("Final-Recipient", "Action", "Status")),
                f"recipient block without Final-Recipient/Action/Status: {block.keys()}")


# the corpus: messages, each with a bounce and with a headers-only delay warning
_BOUNCE = Report("a@example.org", None, None,
                 (("bob@example.org", None, dsn.FAILED, "esmtp", "550 5.1.1 No such user",
                   "5.1.1", "mx.example.org [192.0.2.1]"),), 0.0)
_DELAY = Report("a@example.org", "HDRS", "QID+2B1",
                (("rt@inf.example.ac.uk", "rfc822;rt@inf.example.ac.uk", dsn.DELAYED,
                  "local", "451 4.2.0 busy", "4.2.0", ""),), 5 * 86400.0)


def bounce_with_reply(reply: bytes) -> Report:
    """A bounce whose remote server gave ``reply`` (decoded as the SMTP client does)."""
    text = reply.decode("utf-8", "surrogateescape")
    return Report("a@example.org", None, None,
                  (("mueller@example.de", None, dsn.FAILED, "esmtp", text, "5.1.1",
                    "mx.example.de [192.0.2.7]"),), 0.0)


@corpus_examples("dsn", lambda data: {"report": _BOUNCE, "message": data})
@fuzz_settings(200)
@given(report=REPORTS, message=MESSAGE)
def test_dsn_of_any_message(report: Report, message: bytes) -> None:
    MESSAGES.check(message, lambda: check(report, message))


@corpus_examples("dsn_fields", lambda data: {"report": bounce_with_reply(data),
                                              "message": b"Subject: x\r\n\r\nbody\r\n"})
@fuzz_settings(200)
@given(report=WIRE_REPORTS, message=MESSAGE)
def test_dsn_of_report_fields_from_the_wire(report: Report, message: bytes) -> None:
    FIELDS.check(repr(report).encode("utf-8", "surrogateescape") + b"\n" + message,
                 lambda: check(report, message))


@pytest.mark.parametrize("data", corpus_params("dsn"))
@pytest.mark.parametrize("report", [_BOUNCE, _DELAY], ids=["bounce", "delay"])
def test_corpus(report: Report, data: bytes) -> None:
    check(report, data)


@pytest.mark.parametrize("data", corpus_params("dsn_fields"))
def test_fields_corpus(data: bytes) -> None:
    """corpus/dsn_fields/: remote replies, as bytes on the wire."""
    check(bounce_with_reply(data), b"Subject: x\r\n\r\nbody\r\n")
