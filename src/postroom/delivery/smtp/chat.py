"""Talking SMTP on asyncio streams: the reply reader, the enhanced status in a reply and
the data block (Postfix's smtp_chat.c).

A reply is one or more lines ``NNN-text`` ending with ``NNN text`` (RFC 5321 4.2); its
message is the lines' texts joined with newlines, as aiosmtplib gives it. Each reply has a
timeout of its own (RFC 5321 4.5.3.2). A reply that cannot be read (end of file, garbage,
too long) is a ``Disconnected``: the caller closes the connection.
"""

from __future__ import annotations

import asyncio
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

    async def reply(self, timeout: float | None = None) -> Reply:
        """The next reply; ``Disconnected`` if the connection ended first, TimeoutError if
        ``timeout`` seconds pass without it."""
        async with asyncio.timeout(timeout):
            return await self._read()

    async def replies_into(self, out: list[Reply], count: int,
                           timeout: float | None = None) -> None:
        """``count`` replies appended to ``out`` as they come (the pipelined commands'),
        each with ``timeout`` of its own; what came before a failure stays in ``out``.
        One timer moved on per reply, not one made per reply: a fan-out reads six
        replies a copy."""
        if count <= 0:
            return
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(None if timeout is None else loop.time() + timeout) as t:
            for _ in range(count):
                out.append(await self._read())
                if timeout is not None:
                    t.reschedule(loop.time() + timeout)

    async def _read(self) -> Reply:
        lines: list[bytes] = []
        size = 0
        while True:
            try:
                raw = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                raise Disconnected("Unexpected EOF received") from None
            except asyncio.LimitOverrunError:
                raise Disconnected("Response too long") from None
            size += len(raw)
            if size > MAX_REPLY:
                raise Disconnected("Response too long")
            line = raw[:-1].rstrip(b"\r")
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
