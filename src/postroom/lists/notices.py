"""Mail the list engine writes itself: held-post notices, rejections, confirmations,
welcome and goodbye. From the list's ``-bounces`` address in the envelope (a notice that
bounces must not reach a person) and ``-owner`` in From, so a reply reaches people."""

from __future__ import annotations

import email.utils
import time
from email.message import EmailMessage
from email.policy import SMTP

from postroom.envelope import Envelope
from postroom.lists.model import ListSettings
from postroom.queue import accept
from postroom.runtime import Runtime

Mail = tuple[Envelope, bytes]


def notice(s: ListSettings, rt: Runtime, *, to: str, subject: str, text: str,
           reply_to: str = "") -> tuple[Envelope, bytes] | None:
    """A plain-text notice to ``to`` as a new queue message; None when ``to`` has no
    deliverable route."""
    hostname = rt.site.profile.site.hostname
    msg = EmailMessage(policy=SMTP)
    msg["From"] = s.service("owner")
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    msg["Auto-Submitted"] = "auto-generated"
    msg["Precedence"] = "list"
    if reply_to:
        msg["Reply-To"] = reply_to
    msg.set_content(text)
    recipient = accept.make_recipient(to, rt.resolver.resolve(to).routes)
    if not recipient.deliveries:
        return None
    env = accept.new_envelope(s.service("bounces"), [recipient], protocol="local",
                              client_addr="", helo=hostname)
    env.arrival = time.time()
    return env, msg.as_bytes()
