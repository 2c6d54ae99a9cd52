"""Delivery status notifications (RFC 3464): bounces, delay warnings, success notices.

A DSN is ``multipart/report; report-type=delivery-status`` with three parts: a text for
people, the ``message/delivery-status`` fields for programs (Reporting-MTA, Arrival-Date,
and per recipient Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code), and the
original message (only its headers when the sender asked RET=HDRS, or for delay warnings).

Which recipients get a notice honours NOTIFY (RFC 3461): NEVER -> none; otherwise failures
unless NOTIFY omits FAILURE, delays when NOTIFY is absent or names DELAY, successes only
when NOTIFY names SUCCESS. A message with a null sender never gets a DSN.
"""

from __future__ import annotations

import email.utils
import textwrap
import time
from dataclasses import dataclass

from postroom.envelope import Delivery, Envelope, RcptState, Recipient
from postroom.queue.accept import header_block

FAILED, DELAYED, DELIVERED, RELAYED = "failed", "delayed", "delivered", "relayed"


@dataclass(frozen=True, slots=True)
class Notice:
    recipient: Recipient
    delivery: Delivery
    action: str


def wants(recipient: Recipient, action: str) -> bool:
    notify = recipient.notify
    if notify == ["NEVER"]:
        return False
    if action == FAILED:
        return notify is None or "FAILURE" in notify
    if action == DELAYED:
        return notify is None or "DELAY" in notify
    return notify is not None and "SUCCESS" in notify


def final_action(delivery: Delivery) -> str:
    if delivery.state is RcptState.FAILED:
        return FAILED
    return RELAYED if delivery.mailer in ("esmtp", "relay") else DELIVERED


def _date(ts: float) -> str:
    return email.utils.formatdate(ts, localtime=True)


def _final_recipient(r: Recipient, d: Delivery) -> str:
    address = d.user if "@" in d.user and d.mailer in ("esmtp", "relay") else r.address
    return f"rfc822; {address}"


def _diagnostic(d: Delivery) -> str:
    text = d.last_error or "no reply"
    kind = "smtp" if text[:3].isdigit() else "x-postroom"
    return f"{kind}; {text}"


def build(envelope: Envelope, notices: list[Notice], message: bytes, *, hostname: str,
          postmaster: str, now: float | None = None, lifetime: float = 0.0,
          to: str | None = None) -> bytes:
    """The DSN message (CRLF line ends) to ``to`` (default: the envelope sender)."""
    now = time.time() if now is None else now
    boundary = f"{envelope.id}.{int(now)}/{hostname}"
    actions = {n.action for n in notices}
    delayed_only = actions == {DELAYED}
    if delayed_only:
        subject = "Delayed Mail (still being retried)"
    elif FAILED in actions:
        subject = "Undelivered Mail Returned to Sender"
    else:
        subject = "Successful Mail Delivery Report"
    recipient = to if to is not None else envelope.sender
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{recipient}>",
        f"Subject: {subject}",
        f"Date: {_date(now)}",
        f"Message-ID: <{envelope.id}.dsn.{int(now)}@{hostname}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"',
    ]
    human = _human_text(envelope, notices, hostname, postmaster, delayed_only, lifetime)
    status = _status_fields(envelope, notices, hostname, lifetime)
    full = envelope.ret != "HDRS" and not delayed_only and DELIVERED not in actions
    if full:
        original_type, original = "message/rfc822", message
    else:
        original_type, original = "text/rfc822-headers", header_block(message)
    parts = [
        "\r\n".join(head), "",
        "This is a MIME-encapsulated message.", "",
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=utf-8", "",
        human.rstrip("\r\n"), "",
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status", "",
        status,
        f"--{boundary}",
        "Content-Description: Undelivered message" if FAILED in actions
        else "Content-Description: Message headers",
        f"Content-Type: {original_type}", "",
    ]
    # a remote reply or address with 8-bit bytes (surrogate escapes) must not stop a bounce
    body = "\r\n".join(parts).encode("utf-8", "replace") + b"\r\n" + original
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + f"\r\n--{boundary}--\r\n".encode()


def _human_text(envelope: Envelope, notices: list[Notice], hostname: str, postmaster: str,
                delayed_only: bool, lifetime: float) -> str:
    arrived = _date(envelope.arrival)
    if delayed_only:
        until = _date(envelope.arrival + lifetime) if lifetime else "later"
        intro = (f"This is the mail system at host {hostname}.\n\n"
                 f"Your message, received {arrived}, has not been delivered yet to the "
                 f"recipients below. It will be retried until {until}; you do not need to "
                 "send it again.")
    else:
        intro = (f"This is the mail system at host {hostname}.\n\n"
                 f"Your message, received {arrived}, could not be delivered to one or more "
                 "recipients. It is attached below.\n\n"
                 f"For further help write to <{postmaster}>; include this report.")
    paragraphs = [textwrap.fill(p, 72) for p in intro.split("\n\n")]
    reasons = []
    for n in notices:
        who = n.delivery.user if n.delivery.mailer in ("esmtp", "relay") else n.recipient.address
        reasons.append(f"<{who}>: {n.action}: {n.delivery.last_error or 'no reason given'}")
    text = "\n\n".join(paragraphs) + "\n\n" + "\n".join(reasons) + "\n"
    return text.replace("\n", "\r\n")


def _status_fields(envelope: Envelope, notices: list[Notice], hostname: str,
                   lifetime: float) -> str:
    msg = [f"Reporting-MTA: dns; {hostname}"]
    if envelope.envid:
        msg.append(f"Original-Envelope-Id: {envelope.envid}")
    msg.append(f"Arrival-Date: {_date(envelope.arrival)}")
    blocks = ["\r\n".join(msg)]
    for n in notices:
        d, r = n.delivery, n.recipient
        fields = []
        if r.orcpt:
            addr_type, _, value = r.orcpt.partition(";")
            fields.append(f"Original-Recipient: {addr_type}; {value}")
        fields.append(f"Final-Recipient: {_final_recipient(r, d)}")
        fields.append(f"Action: {n.action}")
        fields.append(f"Status: {d.status or _default_status(n.action)}")
        if d.remote_mta:
            fields.append(f"Remote-MTA: dns; {d.remote_mta.split(' ')[0]}")
        if d.last_error:
            fields.append(f"Diagnostic-Code: {_diagnostic(d)}")
        if d.last_attempt:
            fields.append(f"Last-Attempt-Date: {_date(d.last_attempt)}")
        if n.action == DELAYED and lifetime:
            fields.append(f"Will-Retry-Until: {_date(envelope.arrival + lifetime)}")
        blocks.append("\r\n".join(fields))
    return "\r\n\r\n".join(blocks) + "\r\n"


def _default_status(action: str) -> str:
    return {FAILED: "5.0.0", DELAYED: "4.0.0"}.get(action, "2.0.0")
