"""Small SMTP helpers for tests: smtplib from a chosen source address, and a raw line
client for protocol abuse (send bytes exactly, read replies)."""

from __future__ import annotations

import smtplib
import socket
import ssl
import time

import trustme


def client(port: int, source: str, *, tls: bool = False,
           ca: trustme.CA | None = None) -> smtplib.SMTP:
    if tls:
        ctx = ssl.create_default_context()
        assert ca is not None
        ca.configure_trust(ctx)
        return smtplib.SMTP_SSL("127.0.0.1", port, source_address=(source, 0), timeout=20,
                                context=ctx)
    return smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=20)


def tls_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class Raw:
    """A raw SMTP connection: ``send`` writes bytes as given, ``reply`` reads one reply."""

    def __init__(self, port: int, source: str = "127.0.0.3") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20,
                                             source_address=(source, 0))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffer {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> str:
        """One full (possibly multi-line) reply, as text with lines joined by '\\n'."""
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return "\n".join(x.decode() for x in lines)

    def cmd(self, text: str) -> str:
        self.send(text.encode() + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 5) -> bool:
        self.sock.settimeout(timeout)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionResetError, TimeoutError):
                return True
        return False

    def close(self) -> None:
        self.sock.close()
