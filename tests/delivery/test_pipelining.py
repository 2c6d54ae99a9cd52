"""The pieces of the pipelining client that need no server: the data block (checked
against aiosmtplib's, an independent implementation) and the reply reader (the
transactions themselves run against sinks in test_esmtp.py and test_smtp_protocol.py)."""

from __future__ import annotations

import asyncio

import aiosmtplib.protocol
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom.delivery.pipelining import Disconnected, ReplyReader, data_block
from postroom.delivery.smtp.chat import DataBlocks

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


@given(st.lists(st.tuples(lines, lines), min_size=1, max_size=4),
       st.sampled_from([b"\r\n", b"\n", b"\r"]))
def test_data_blocks_of_copies_that_end_alike_are_data_block(
        copies: list[tuple[list[bytes], list[bytes]]], eol: bytes) -> None:
    """The header made ready per copy and the body once give the same bytes, whatever
    the line ends and dots, for copies that share a body and for those that do not."""
    blocks = DataBlocks()
    body = eol.join(copies[0][1])
    for head, own_body in copies:
        for b in (body, eol.join(own_body)):
            message = eol.join(head) + b"\r\n\r\n" + b
            assert blocks(message) == data_block(message)
    assert blocks(b"no header end") == data_block(b"no header end")


def _fed(*chunks: bytes, eof: bool = False) -> ReplyReader:
    stream = asyncio.StreamReader()
    for chunk in chunks:
        stream.feed_data(chunk)
    if eof:
        stream.feed_eof()
    return ReplyReader(stream)


async def test_replies_split_anywhere_come_out_in_order() -> None:
    raw = (b"250 2.1.0 Ok\r\n250-first line\r\n250-second\r\n250 last\r\n"
           b"550 5.1.1 No such user\r\n354 Go ahead\r\n")
    for cut in range(1, len(raw)):
        reader = _fed(raw[:cut], raw[cut:])
        got = [await reader.reply() for _ in range(4)]
        assert [(r.code, r.message) for r in got] == [
            (250, "2.1.0 Ok"), (250, "first line\nsecond\nlast"),
            (550, "5.1.1 No such user"), (354, "Go ahead")]


async def test_lines_read_ahead_of_the_replies_asked_for_are_pending() -> None:
    reader = _fed(b"250 2.0.0 queued\r\n250 2.0.0 unasked\r\n")
    assert (await reader.reply()).message == "2.0.0 queued"
    assert reader.pending
    assert (await reader.reply()).message == "2.0.0 unasked"
    assert not reader.pending


async def test_lost_connection_ends_the_wait() -> None:
    stream = asyncio.StreamReader()
    reader = ReplyReader(stream)
    stream.feed_data(b"250 Ok\r\n")
    waiting = asyncio.ensure_future(asyncio.gather(reader.reply(), reader.reply()))
    await asyncio.sleep(0)
    stream.feed_eof()
    with pytest.raises(Disconnected):
        await waiting


async def test_garbage_is_an_error() -> None:
    with pytest.raises(Disconnected, match="Malformed"):
        await _fed(b"hello there\r\n").reply()


async def test_a_reply_without_end_is_an_error() -> None:
    with pytest.raises(Disconnected):
        await _fed(b"250-more to come\r\n250-", eof=True).reply()
    with pytest.raises(Disconnected, match="too long"):
        await _fed(b"250-" + b"x" * 70000 + b"\r\n").reply()


async def test_each_reply_has_its_own_timeout() -> None:
    reader = _fed(b"250 Ok\r\n")
    assert (await reader.reply(0.01)).code == 250
    with pytest.raises(TimeoutError):
        await reader.reply(0.01)


async def test_a_group_of_replies_has_a_timeout_per_reply_not_one_for_all() -> None:
    """Three replies 0.06 s apart under a 0.1 s timeout: each came in time, so none times
    out although the group took longer; then a reply that does not come in 0.1 s does,
    and the replies read before it are kept."""
    stream = asyncio.StreamReader()
    reader = ReplyReader(stream)

    async def trickle() -> None:
        for line in (b"250 a\r\n", b"250 b\r\n", b"354 c\r\n"):
            await asyncio.sleep(0.06)
            stream.feed_data(line)

    feeding = asyncio.ensure_future(trickle())
    got: list = []  # type: ignore[type-arg]
    await reader.replies_into(got, 3, 0.1)
    await feeding
    assert [r.code for r in got] == [250, 250, 354]
    stream.feed_data(b"250 d\r\n")
    more: list = []  # type: ignore[type-arg]
    with pytest.raises(TimeoutError):
        await reader.replies_into(more, 2, 0.1)
    assert [r.code for r in more] == [250]
