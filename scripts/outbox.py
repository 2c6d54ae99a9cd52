"""The example site's outbox: an SMTP server on 127.0.0.1 that keeps every message it is
given in a Maildir and passes nothing on.

The example's mailertable sends every domain that is not its own to 127.0.0.1:2526, so while
``make run`` serves the example, mail for outside addresses lands here, readable, and never
on the network::

    .venv/bin/python scripts/outbox.py [--port 2526] DIR [-- COMMAND ARG...]

Each message is a file in ``DIR/new/`` with ``Return-Path`` and one ``Delivered-To`` per
envelope recipient on top (the headers alone do not show Bcc or expanded aliases).

With a COMMAND (``make run`` gives ``postroom serve``) the port is bound before COMMAND starts,
so mail is never routed to a port nobody holds; the outbox stays open while COMMAND drains its
queue on Ctrl-C or SIGTERM, and exits with COMMAND's status. The first line printed names the
port (``--port 0`` takes a free one).
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import signal
import sys
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

LOOPBACK = "127.0.0.1"


class Outbox:
    """aiosmtpd handler: every message into the Maildir (stdlib: a test outbox needs no fsync)."""

    def __init__(self, directory: Path) -> None:
        self.maildir = mailbox.Maildir(directory, create=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        trace = f"Return-Path: <{envelope.mail_from}>\n" + "".join(
            f"Delivered-To: {rcpt}\n" for rcpt in envelope.rcpt_tos)
        content = envelope.original_content or b""
        self.maildir.add(trace.encode("utf-8", "surrogateescape")
                         + content.replace(b"\r\n", b"\n"))
        return "250 2.0.0 Ok: kept in the outbox, not sent on"


async def serve(directory: Path, port: int, command: list[str]) -> int:
    loop = asyncio.get_running_loop()
    handler = Outbox(directory)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="outbox.localhost", enable_SMTPUTF8=True,
                     data_size_limit=None), LOOPBACK, port)
    bound = server.sockets[0].getsockname()[1]
    print(f"outbox: SMTP on {LOOPBACK}:{bound}, mail kept in {directory}/new/", flush=True)
    status = 0
    if command:
        child = await asyncio.create_subprocess_exec(*command)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, child.send_signal, sig)
        code = await child.wait()
        status = code if code >= 0 else 128 - code
    else:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    server.close()
    await server.wait_closed()
    return status


def main(argv: list[str]) -> int:
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1:]
    ap = argparse.ArgumentParser(prog="outbox.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("directory", type=Path, help="the Maildir to keep messages in")
    ap.add_argument("--port", type=int, default=2526, help="port on 127.0.0.1 (0: any free)")
    args = ap.parse_args(argv)
    return asyncio.run(serve(args.directory, args.port, command))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
