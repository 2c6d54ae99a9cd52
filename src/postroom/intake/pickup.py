"""Local submission: what ``postroom-sendmail`` does with a message read from stdin.

The recipients come from the command line, or with ``-t`` from the To, Cc and Bcc headers
(Bcc is then removed). Each is resolved now: an address no map knows is reported and left
out, as sendmail does; if none is left, nothing is queued. The message gets a Received
line, and Message-ID, Date and From when it lacks them, then goes into the spool with the
same durability as SMTP intake, through ``runner.inject``: a running server is told at
once and makes the first attempt.
"""

from __future__ import annotations

import asyncio
import email.utils
import getpass
import os
import re

from postroom import maillog
from postroom.queue import accept, ids
from postroom.runner import inject
from postroom.runtime import build

_ADDRESS_HEADERS = (b"to", b"cc", b"bcc")


def _header_values(headers: bytes, names: tuple[bytes, ...]) -> list[str]:
    """Unfolded values of the named header fields."""
    unfolded = re.sub(rb"\r\n[ \t]+", b" ", headers)
    out = []
    for line in unfolded.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in names:
            out.append(value.strip().decode("utf-8", "replace"))
    return out


def _drop_header(data: bytes, name: bytes) -> bytes:
    headers = accept.header_block(data)
    body = data[len(headers):]
    kept: list[bytes] = []
    skipping = False
    for line in headers.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.split(b":", 1)[0].strip().lower() == name
        if not skipping:
            kept.append(line)
    return b"\r\n".join(kept) + body


def submit_local(site_dir: str | None, sender: str, recipients: list[str], data: bytes, *,
                 extract: bool = False,
                 full_name: str | None = None) -> tuple[str | None, list[tuple[str, str]]]:
    """Queue a locally submitted message; returns (queue id or None, refused addresses)."""
    rt = build(site_dir)
    p = rt.site.profile
    domain = p.site.domains[0]
    if sender and "@" not in sender:
        sender = f"{sender}@{domain}"
    headers = accept.header_block(data)
    wanted = list(recipients)
    if extract:
        for value in _header_values(headers, _ADDRESS_HEADERS):
            wanted += [addr for _, addr in email.utils.getaddresses([value]) if addr]
        data = _drop_header(data, b"bcc")
    if not wanted:
        raise ValueError("no recipients given (name them, or use -t to read the headers)")
    taken, refused = [], []
    for address in dict.fromkeys(wanted):
        resolution = rt.resolver.resolve(address)  # the verdict RCPT and verify give
        refusal = resolution.refusal
        if refusal is not None:
            refused.append((address, refusal.text))
            continue
        taken.append(accept.make_recipient(address, resolution.routes))
    if not taken:
        return None, refused
    queue_id = ids.new_id()
    user = getpass.getuser()
    trace = accept.received_header(
        helo="", client_name="", client_addr="", hostname=p.site.hostname,
        protocol="local", queue_id=queue_id, rcpt=None,
        local_user=f"{user}@localhost, uid {os.getuid()}")
    extra = accept.missing_ids(data, p.site.hostname, queue_id)
    if not accept.has_header(headers, b"from"):
        shown = f"{full_name} <{sender}>" if full_name else f"<{sender}>"
        extra += f"From: {shown}\r\n".encode()
    message = trace + extra + data
    env = accept.new_envelope(sender, taken, id=queue_id, protocol="local",
                              client_addr="127.0.0.1", auth_user=user)
    asyncio.run(inject(env, message, site=rt.site))
    maillog.open_log(rt.site.log_path, p.site.hostname)
    maillog.accepted(queue_id, sender, len(message), len(taken), "local", f"{user}@localhost")
    maillog.close_log()
    return queue_id, refused
