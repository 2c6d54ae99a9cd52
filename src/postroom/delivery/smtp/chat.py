"""Talking SMTP on asyncio streams: the reply reader, the enhanced status in a reply and
the data block (Postfix's smtp_chat.c).

A reply is one or more lines ``NNN-text`` ending with ``NNN text`` (RFC 5321 4.2); its
message is the lines' texts joined with newlines, as aiosmtplib gives it. Each reply has a
timeout of its own (RFC 5321 4.5.3.2). A reply that cannot be read (end of file, garbage,
too long) is a ``Disconnected``: the caller closes the connection.

The reader takes whatever the connection has (one read for the replies to a pipelined
group, which come together) and splits the lines itself; lines read ahead of the replies
asked for are ``pending``, and a session with some is out of step (not reused, no TLS).
"""

from __future__ import annotations

import asyncio
import collections
import re
from typing import NamedTuple

MAX_REPLY = 65536  # bytes of one reply; more is a broken server

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")
_LINE_ENDS = re.compile(rb"(?:\r\n|\n|\r(?!\n))")


class Reply(NamedTuple):
    code: int
    message: str


class Disconnected(ConnectionError):
    """The connection ended, or said something that is not SMTP, before the reply."""


class ReplyReader:
    """Reads replies, in order, from the connection's stream."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._lines: collections.deque[bytes] = collections.deque()  # read, not taken
        self._partial = b""  # the start of a line not yet ended

    @property
    def pending(self) -> bool:
        """Something was read that no reply asked for yet."""
        return bool(self._lines or self._partial)

    async def reply(self, timeout: float | None = None) -> Reply:
        """The next reply; ``Disconnected`` if the connection ended first, TimeoutError if
        ``timeout`` seconds pass without it."""
        return await self._read(timeout)

    async def replies_into(self, out: list[Reply], count: int,
                           timeout: float | None = None) -> None:
        """``count`` replies appended to ``out`` as they come (the pipelined commands'),
        each with ``timeout`` of its own; what came before a failure stays in ``out``."""
        for _ in range(count):
            out.append(await self._read(timeout))

    async def _fill(self, deadline: float | None) -> None:
        """Read until there is a whole line, by ``deadline`` (loop time). A timer only
        for a read that waits: the replies to a pipelined group come in one read."""
        while not self._lines:
            async with asyncio.timeout_at(deadline):
                chunk = await self._reader.read(MAX_REPLY)
            if not chunk:
                raise Disconnected("Unexpected EOF received")
            *ended, self._partial = (self._partial + chunk).split(b"\n")
            if len(self._partial) > MAX_REPLY:
                raise Disconnected("Response too long")
            self._lines.extend(ended)

    async def _read(self, timeout: float | None) -> Reply:
        lines: list[bytes] = []
        size = 0
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            if not self._lines:
                await self._fill(deadline)
            raw = self._lines.popleft()
            size += len(raw) + 1
            if size > MAX_REPLY:
                raise Disconnected("Response too long")
            line = raw.rstrip(b"\r")
            lines.append(line)
            if line[3:4] != b"-":
                break
        try:
            code = int(lines[0][:3])
        except ValueError:
            raise Disconnected(f"Malformed SMTP response line: {lines[0]!r}") from None
        text = "\n".join(x[4:].strip(b" \t").decode("utf-8", "surrogateescape") for x in lines)
        return Reply(code, text)


def parse_reply(code: int, message: str) -> tuple[str, str]:
    """Split an SMTP reply into the enhanced status and the text.

    ``250, "2.0.0 Ok: queued as X"`` -> ``("2.0.0", "Ok: queued as X")``. A reply without an
    enhanced code, or with one whose class disagrees with the basic code, gets ``X.0.0``
    from the basic code. Lines of a multi-line reply are joined with spaces.
    """
    klass = str(code)[0] if code else "4"
    status = ""
    words: list[str] = []
    for line in message.splitlines() or [""]:
        m = _ENHANCED.match(line)
        if m:
            status = status or line[: m.end()].strip()
            line = line[m.end():]
        if line.strip():
            words.append(line.strip())
    if not status or status[0] != klass:
        status = f"{klass}.0.0" if not status else f"{klass}{status[1:]}"
    return status, " ".join(words)


class DataBlocks:
    """``data_block`` for a run of messages that end alike (a list post's personalised
    copies: each member's own header fields, then the same body): the body is made ready
    once, then only each copy's header. The same bytes as ``data_block``: the cut is
    after the header's last CRLF, and the body begins with the empty line, so no line
    end or leading dot spans it."""

    def __init__(self) -> None:
        self._body = b""
        self._ready = b""

    def __call__(self, message: bytes) -> bytes:
        cut = message.find(b"\r\n\r\n")
        if cut < 0:
            return data_block(message)
        head, body = message[:cut + 2], message[cut + 2:]
        if body != self._body:
            self._body, self._ready = body, data_block(body)
        return data_block(head)[:-3] + self._ready  # the head's own ".\r\n" dropped


def data_block(message: bytes) -> bytes:
    """The message as sent after DATA's 354: CRLF line ends, dot-stuffed, with the end."""
    if not (message.count(b"\r") == message.count(b"\n") == message.count(b"\r\n")):
        message = _LINE_ENDS.sub(b"\r\n", message)
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"
