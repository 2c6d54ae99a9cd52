"""RFC 2920 PIPELINING for the SMTP client: a transaction is two writes (RSET if needed,
MAIL, every RCPT and DATA together; then the message) instead of one per command, and the
replies are read in order.

aiosmtplib runs everything else (connect, EHLO, STARTTLS, AUTH, QUIT), but it reads one
reply per command and drops whatever arrives before it asks for it, so it cannot pipeline.
For one transaction the connection's transport is lent to a ``ReplyReader`` and then given
back: ``with ReplyReader.lend(smtp) as reader``. What happens to the connection meanwhile
(loss, flow control) is passed on to aiosmtplib's protocol, so it knows afterwards.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiosmtplib
from aiosmtplib import SMTPResponse, SMTPResponseException, SMTPServerDisconnected

MAX_REPLY = 65536  # bytes of one reply; more is a broken server


class ReplyReader(asyncio.Protocol):
    """The connection's protocol while a pipelined transaction runs."""

    def __init__(self, owner: Any, transport: asyncio.Transport) -> None:
        self.owner = owner          # aiosmtplib's SMTPProtocol
        self.transport = transport
        self._buffer = bytearray()
        self._replies: deque[SMTPResponse] = deque()
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    @classmethod
    @contextmanager
    def lend(cls, smtp: aiosmtplib.SMTP) -> Iterator[ReplyReader]:
        protocol = smtp.protocol
        transport = protocol.transport if protocol is not None else None
        if protocol is None or transport is None or transport.is_closing():
            raise SMTPServerDisconnected("Connection lost")
        reader = cls(protocol, transport)
        transport.set_protocol(reader)
        try:
            yield reader
        finally:
            if not transport.is_closing():
                transport.set_protocol(protocol)

    # -- for the transaction ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._error is not None or self.transport.is_closing():
            raise SMTPServerDisconnected("Connection lost")
        self.transport.write(data)

    async def reply(self, timeout: float | None = None) -> SMTPResponse:
        """The next reply; SMTPServerDisconnected if the connection ended first,
        TimeoutError if ``timeout`` seconds pass without it."""
        if self._replies:  # pipelined replies mostly come together: no timer for these
            return self._replies.popleft()
        async with asyncio.timeout(timeout):
            while not self._replies:
                if self._error is not None:
                    raise self._error
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        return self._replies.popleft()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            self._parse()
        except SMTPResponseException as e:
            self._fail(e)
            self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._fail(SMTPServerDisconnected("Unexpected EOF received"))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = SMTPServerDisconnected("Connection lost")
        error.__cause__ = exc
        self._fail(error)
        self.owner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.owner.pause_writing()

    def resume_writing(self) -> None:
        self.owner.resume_writing()

    # -- parsing ------------------------------------------------------------------------

    def _parse(self) -> None:
        """Move every complete reply from the buffer to the queue."""
        buf = self._buffer
        start = 0
        while True:
            lines: list[bytes] = []
            pos = start
            while True:
                end = buf.find(b"\n", pos)
                if end < 0:
                    if len(buf) - start > MAX_REPLY:
                        raise SMTPResponseException(-1, "Response too long")
                    del buf[:start]
                    return
                line = bytes(buf[pos:end]).rstrip(b"\r")
                pos = end + 1
                lines.append(line)
                if line[3:4] != b"-":
                    break
            try:
                code = int(lines[0][:3])
            except ValueError:
                raise SMTPResponseException(
                    -1, f"Malformed SMTP response line: {lines[0]!r}") from None
            text = "\n".join(x[4:].strip(b" \t").decode("utf-8", "surrogateescape")
                             for x in lines)
            self._replies.append(SMTPResponse(code, text))
            start = pos

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def data_block(message: bytes) -> bytes:
    """The message as sent after DATA's 354: CRLF line ends, dot-stuffed, with the end."""
    if not (message.count(b"\r") == message.count(b"\n") == message.count(b"\r\n")):
        message = aiosmtplib.protocol.LINE_ENDINGS_REGEX.sub(b"\r\n", message)
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"
