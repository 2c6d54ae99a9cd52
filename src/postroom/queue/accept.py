"""Taking a message into the queue: the Received trace header, Message-ID and Date for
submissions, and the envelope with each recipient's resolved routes.

Used by SMTP intake and by ``postroom-sendmail``; the spool's ``put`` is the one place a
message becomes durable.
"""

from __future__ import annotations

import email.utils
import time

from postroom.envelope import Delivery, Envelope, Recipient
from postroom.types import Route

HEADER_END = b"\r\n\r\n"


def received_header(*, helo: str, client_name: str, client_addr: str, hostname: str,
                    protocol: str, queue_id: str, rcpt: str | None, tls: str = "",
                    cipher: str = "", auth_user: str = "", local_user: str = "",
                    when: float | None = None) -> bytes:
    """An RFC 5321 section 4.4 trace line; ``with`` names ESMTPS/ESMTPSA per RFC 3848.
    ``local_user`` (``user@localhost, uid N``) for mail submitted on this host."""
    if local_user:
        from_part = f"(from {local_user})"
    elif client_addr:
        from_part = f"from {helo or client_addr} ({client_name or 'unknown'} [{client_addr}])"
    else:
        from_part = f"from {helo or 'localhost'}"
    lines = [f"Received: {from_part}"]
    if tls:
        lines.append(f"\t(using {tls}{' with cipher ' + cipher if cipher else ''})")
    if auth_user:
        lines.append(f"\t(authenticated as {auth_user})")
    lines.append(f"\tby {hostname} (postroom) with {protocol} id {queue_id}")
    date = rfc5322_date(when)
    if rcpt:
        lines.append(f"\tfor <{rcpt}>; {date}")
    else:
        lines[-1] += f"; {date}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


_last_date: tuple[int, str] = (-1, "")


def rfc5322_date(when: float | None = None) -> str:
    """The local time as a Date header wants it; made once per second (it is in every
    message's Received line, and formatdate costs more than the rest of that line)."""
    global _last_date
    now = int(time.time() if when is None else when)
    if _last_date[0] != now:
        _last_date = (now, email.utils.formatdate(now, localtime=True))
    return _last_date[1]


def header_block(data: bytes) -> bytes:
    end = data.find(HEADER_END)
    if end < 0:
        return data if not data.startswith(b"\r\n") else b""
    return data[: end + 2]


def has_header(headers: bytes, name: bytes) -> bool:
    """Whether a header field ``name`` (lower case, no colon) is present."""
    lowered = b"\r\n" + headers.lower()
    return (b"\r\n" + name + b":") in lowered


def missing_ids(data: bytes, hostname: str, queue_id: str, when: float | None = None) -> bytes:
    """Message-ID and Date headers to add to a submission that lacks them."""
    headers = header_block(data)
    out = b""
    if not has_header(headers, b"message-id"):
        out += f"Message-ID: <{queue_id}.{int(time.time())}@{hostname}>\r\n".encode()
    if not has_header(headers, b"date"):
        out += f"Date: {rfc5322_date(when)}\r\n".encode()
    return out


def make_recipient(address: str, routes: list[Route], *, orcpt: str | None = None,
                   notify: list[str] | None = None) -> Recipient:
    return Recipient(address, [Delivery.from_route(r) for r in routes if r.deliverable],
                     orcpt=orcpt, notify=notify)


def new_envelope(sender: str, recipients: list[Recipient], **fields: object) -> Envelope:
    return Envelope(sender=sender, recipients=recipients, arrival=time.time(),
                    **fields)  # type: ignore[arg-type]
