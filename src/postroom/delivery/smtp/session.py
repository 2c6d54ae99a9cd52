"""One SMTP session on asyncio streams (Postfix's smtp_session.c): the connection, what
EHLO offered, the TLS version, and the command writer.

``command`` is one command and its reply, as aiosmtplib's ``execute_command`` was: a 421
reply (the server is closing) closes the connection. ``write`` and ``reply`` are the halves
for a pipelined transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field

from postroom.delivery.smtp.chat import Disconnected, Reply, ReplyReader, ReplyStream

_OLDSTYLE_AUTH = re.compile(r"auth=(?P<auth>.*)", flags=re.I)


@dataclass(eq=False)
class Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str
    ip: str
    timeout: float  # for each reply, and for each write to drain
    route_name: str = ""  # the route's host without brackets (TLS verify checks it)
    tls: str = ""
    features: dict[str, str] = field(default_factory=dict)  # EHLO keyword (lower) -> params
    auth_types: list[str] = field(default_factory=list)
    opened: float = field(default_factory=time.monotonic)
    transactions: int = 0
    open_transaction: bool = False  # MAIL was accepted and the data's reply not yet read
    closed: bool = False
    idle_timer: asyncio.TimerHandle | None = None
    watcher: asyncio.Task[None] | None = None  # while idle: notices the server hanging up
    replies: ReplyReader = field(init=False)

    def __post_init__(self) -> None:
        self.replies = ReplyReader(self.reader)

    @property
    def remote(self) -> str:
        return f"{self.host} [{self.ip}]"

    @property
    def alive(self) -> bool:
        return not (self.closed or self.writer.is_closing() or self.reader.at_eof()
                    or self.reader.exception() is not None)

    def supports(self, extension: str) -> bool:
        return extension.lower() in self.features

    def set_features(self, ehlo_message: str) -> None:
        """EHLO's reply: the first line greets, each other is ``KEYWORD [params]``
        (and the old ``AUTH=mechanisms``)."""
        self.features, self.auth_types = {}, []
        for line in ehlo_message.split("\n")[1:]:
            line = line.strip()
            if not line:
                continue
            old = _OLDSTYLE_AUTH.fullmatch(line)
            if old is not None:
                self.features["auth"] = old["auth"]
                self.auth_types.extend(m.lower() for m in old["auth"].split())
                continue
            keyword, _, params = line.partition(" ")
            self.features[keyword.lower()] = params
            if keyword.lower() == "auth":
                self.auth_types.extend(m.lower() for m in params.split())

    # -- the command writer -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.alive:
            raise Disconnected("Connection lost")
        self.writer.write(data)

    async def drain(self) -> None:
        if not self.writer.transport.get_write_buffer_size():
            return  # all handed to the kernel: nothing to wait for (a timer saved)
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def reply(self) -> Reply:
        return await self.replies.reply(self.timeout)

    async def replies_into(self, out: list[Reply], count: int) -> None:
        await self.replies.replies_into(out, count, self.timeout)

    async def command(self, *args: bytes) -> Reply:
        self.write(b" ".join(args) + b"\r\n")
        await self.drain()
        reply = await self.reply()
        if reply.code == 421:  # the server is going away: be nice and close too
            self.close()
        return reply

    def close(self) -> None:
        self.closed = True
        if isinstance(self.reader, ReplyStream):
            self.reader.unwatch()  # nothing of a closed session is reported
        self.writer.close()

    async def quit(self, timeout: float) -> None:
        """QUIT politely (briefly), then drop the connection whatever happened."""
        if self.alive:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await self.command(b"QUIT")
        self.close()
