"""SMTP servers in the test's own event loop, on 127.0.0.1 port 0, and a line client on
asyncio streams. Use these when a test must see what the server process itself does
(warnings, log records, module state) and not only what a client sees."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiosmtpd.smtp import SMTP


@asynccontextmanager
async def serving(factory: Callable[[], SMTP], *,
                  tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A listener that makes each session with ``factory``; yields its port. With
    ``tls``, TLS starts at connect (implicit TLS, as on port 465)."""
    server = await asyncio.get_running_loop().create_server(
        factory, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


class Conversation:
    """One client connection: ``cmd`` sends a line and reads the whole reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, *, tls: ssl.SSLContext | None = None) -> Conversation:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None), 10)
        return cls(reader, writer)

    async def reply(self) -> str:
        """One reply, its lines joined by "\\n"."""
        lines: list[str] = []
        while not lines or lines[-1][3:4] == "-":
            line = await asyncio.wait_for(self.reader.readline(), 10)
            if not line:
                raise ConnectionError(f"closed after {lines!r}")
            lines.append(line.decode().rstrip("\r\n"))
        return "\n".join(lines)

    async def cmd(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply()

    async def starttls(self, tls: ssl.SSLContext) -> None:
        await self.writer.start_tls(tls, server_hostname="localhost")

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass
