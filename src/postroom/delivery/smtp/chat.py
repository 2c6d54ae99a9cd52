"""Talking SMTP on asyncio streams: the reply reader, the enhanced status in a reply and
the data block (Postfix's smtp_chat.c).

A reply is one or more lines ``NNN-text`` ending with ``NNN text`` (RFC 5321 4.2); its
message is the lines' texts joined with newlines, as aiosmtplib gives it. Each reply has a
timeout of its own (RFC 5321 4.5.3.2). A reply that cannot be read (end of file, garbage,
too long) is a ``Disconnected``: the caller closes the connection.

The reader takes whatever the connection has (one read for the replies to a pipelined
group, which come together) and splits the lines itself; lines read ahead of the replies
asked for are ``pending``, and a session with some is out of step (not reused, no TLS).

A message the server accepted must be recorded before anything else happens: a crash
between its 250 and that record sends it again (``queue.journal``). The task waiting for
the reply runs only after the event loop has gone round once or twice more, behind every
other session's work, so the connection's stream (``ReplyStream``) can instead call
back the moment the whole next reply has arrived (``ReplyReader.on_next``), from the
protocol's ``data_received``; the reply is read by the task as ever.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple, SupportsIndex

MAX_REPLY = 65536  # bytes of one reply; more is a broken server
STREAM_LIMIT = 2 ** 16  # asyncio.open_connection's default
log = logging.getLogger("postroom.delivery.smtp_client")

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")
_LINE_ENDS = re.compile(rb"(?:\r\n|\n|\r(?!\n))")


class Reply(NamedTuple):
    code: int
    message: str


class Disconnected(ConnectionError):
    """The connection ended, or said something that is not SMTP, before the reply."""


class ReplyStream(asyncio.StreamReader):
    """The connection's StreamReader, which can watch the bytes as they arrive for the
    end of the next reply (``watch``)."""

    _watch: Callable[[Reply], None] | None = None
    _seen: bytes = b""            # the start of a line not yet ended
    _seen_lines: list[bytes]      # the reply's lines so far (made by unwatch)
    _seen_size = 0

    def watch(self, callback: Callable[[Reply], None]) -> None:
        """Call ``callback`` from ``feed_data`` once the next reply has arrived whole; no
        call when bytes wait unread, which the next reply would follow."""
        self.unwatch()
        # the StreamReader's own unread bytes (never watch if it keeps none we can see)
        if not getattr(self, "_buffer", b"?"):
            self._watch = callback

    def unwatch(self) -> None:
        self._watch, self._seen, self._seen_lines, self._seen_size = None, b"", [], 0

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        super().feed_data(data)
        if self._watch is not None:
            self._look(bytes(data))

    def _look(self, data: bytes) -> None:
        """What ``ReplyReader._read`` will make of the same bytes, limits included."""
        seen = self._seen + data
        while (end := seen.find(b"\n")) >= 0:
            line, seen = seen[:end].rstrip(b"\r"), seen[end + 1:]
            self._seen_size += end + 1
            if self._seen_size > MAX_REPLY:
                self.unwatch()  # the task gives up on this reply too
                return
            self._seen_lines.append(line)
            if line[3:4] != b"-":
                callback, lines = self._watch, self._seen_lines
                self.unwatch()
                try:
                    reply = reply_of(lines)
                except Disconnected:
                    return  # the task that reads it says so
                assert callback is not None
                try:
                    callback(reply)
                except Exception:  # the task's own report follows; never break the stream
                    log.exception("recording a reply as it arrived failed")
                return
        if len(seen) > MAX_REPLY:
            self.unwatch()
            return
        self._seen = seen


async def open_stream(host: str, port: int) -> tuple[ReplyStream, asyncio.StreamWriter]:
    """``asyncio.open_connection``, with a ``ReplyStream`` for the reader."""
    loop = asyncio.get_running_loop()
    reader = ReplyStream(limit=STREAM_LIMIT, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


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

    def on_next(self, callback: Callable[[Reply], None]) -> None:
        """Call ``callback`` with the next reply the moment it has arrived, before the
        task reads it; only for a reply nothing is read ahead of (asked for right after
        the command was written), on a ``ReplyStream``. The watch ends with that reply."""
        if isinstance(self._reader, ReplyStream) and not self.pending:
            self._reader.watch(callback)

    async def reply(self, timeout: float | None = None) -> Reply:
        """The next reply; ``Disconnected`` if the connection ended first, TimeoutError if
        ``timeout`` seconds pass without it."""
        try:
            return await self._read(timeout)
        finally:
            if isinstance(self._reader, ReplyStream):
                self._reader.unwatch()

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
        return reply_of(lines)


def reply_of(lines: list[bytes]) -> Reply:
    """The reply of its lines (line ends removed), or ``Disconnected``."""
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
