"""The pieces of the pipelining client that need no server: the data block and the reply
parser (the transactions themselves run against sinks in test_esmtp.py)."""

from __future__ import annotations

import asyncio

import aiosmtplib.protocol
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom.delivery.pipelining import ReplyReader, data_block

lines = st.lists(st.sampled_from([b"", b".", b"..", b".x", b"x", b"From x", b"a\rb", b"a\nb",
                                  b"\xff", b"."]), max_size=12)


@given(lines, st.sampled_from([b"\r\n", b"\n", b"\r"]))
def test_data_block_is_what_aiosmtplib_sends(parts: list[bytes], eol: bytes) -> None:
    message = eol.join(parts) + b"\r\n"
    expected = aiosmtplib.protocol.normalize_message_line_endings(message)
    expected = aiosmtplib.protocol.PERIOD_REGEX.sub(b"..", expected) + b".\r\n"
    assert data_block(message) == expected


def test_data_block_ends_an_unterminated_last_line() -> None:
    assert data_block(b"Subject: x\r\n\r\n.last") == b"Subject: x\r\n\r\n..last\r\n.\r\n"


class _Owner:
    def __init__(self) -> None:
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_replies_split_anywhere_come_out_in_order() -> None:
    raw = (b"250 2.1.0 Ok\r\n250-first line\r\n250-second\r\n250 last\r\n"
           b"550 5.1.1 No such user\r\n354 Go ahead\r\n")
    for cut in range(1, len(raw)):
        reader = ReplyReader(_Owner(), _Transport())
        reader.data_received(raw[:cut])
        reader.data_received(raw[cut:])
        got = [await reader.reply() for _ in range(4)]
        assert [(r.code, r.message) for r in got] == [
            (250, "2.1.0 Ok"), (250, "first line\nsecond\nlast"),
            (550, "5.1.1 No such user"), (354, "Go ahead")]


async def test_lost_connection_ends_the_wait_and_tells_aiosmtplib() -> None:
    owner = _Owner()
    reader = ReplyReader(owner, _Transport())
    reader.data_received(b"250 Ok\r\n")
    waiting = asyncio.ensure_future(asyncio.gather(reader.reply(), reader.reply()))
    await asyncio.sleep(0)
    reader.connection_lost(None)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await waiting
    assert owner.lost


async def test_garbage_is_an_error() -> None:
    transport = _Transport()
    reader = ReplyReader(_Owner(), transport)
    reader.data_received(b"hello there\r\n")
    with pytest.raises(aiosmtplib.SMTPResponseException):
        await reader.reply()
    assert transport.closed
