"""Opening a session once connected (Postfix's smtp_proto.c, first half): EHLO with HELO
fallback, STARTTLS after the destination's TLS mode, AUTH PLAIN or LOGIN.

    EHLO         (HELO if EHLO is refused)
    STARTTLS     opportunistic: when offered, without certificate checks; a failed
                 handshake is retried once in plain text. required: not offered, refused
                 or failed -> next address (4.7.4 / 4.7.5). never: not tried
    AUTH         relay only, and only over TLS; a refusal -> next address
"""

from __future__ import annotations

import asyncio
import base64
import ssl

from postroom.delivery.smtp.chat import Disconnected
from postroom.delivery.smtp.policy import Policy, TlsContexts, TlsMode, tls_failed
from postroom.delivery.smtp.session import Session
from postroom.delivery.smtp.trouble import fail


async def hello(session: Session, hostname: str) -> None:
    name = hostname.encode()
    reply = await session.command(b"EHLO", name)
    if reply.code == 250:
        session.set_features(reply.message)
        return
    if not session.alive:
        raise Disconnected(f"{reply.code} {reply.message}")
    second = await session.command(b"HELO", name)
    if second.code != 250:
        raise fail("4.4.0", f"{session.remote} refused EHLO and HELO: {reply.code} "
                   f"{reply.message}; {second.code} {second.message}", session.remote)
    session.features, session.auth_types = {}, []


async def starttls(session: Session, hostname: str, mode: TlsMode, policy: Policy,
                   contexts: TlsContexts) -> None:
    remote = session.remote
    if mode == "never":
        return
    if not session.supports("starttls"):
        if mode != "opportunistic":
            raise fail("4.7.4", f"TLS required but not offered by {remote}", remote)
        return
    context, sni = contexts.choose(mode, policy, session.host, session.route_name, remote)
    reply = await session.command(b"STARTTLS")
    if reply.code != 220:
        if mode != "opportunistic" or not session.alive:
            raise fail("4.7.5", f"{remote} refused STARTTLS: {reply.code} {reply.message}",
                       remote)
        return  # opportunistic: carry on in plain text on this connection
    if session.replies.pending:  # said more than 220 before TLS: it could be injected
        session.close()
        raise fail("4.7.5", f"{remote} sent more than its 220 reply to STARTTLS", remote)
    try:
        async with asyncio.timeout(session.timeout):
            await session.writer.start_tls(context, server_hostname=sni)
    except (ssl.SSLError, OSError) as e:  # OSError: lost, reset, timed out
        session.close()
        raise tls_failed(remote, e, mode) from None
    ssl_object = session.writer.get_extra_info("ssl_object")
    session.tls = ssl_object.version() if ssl_object is not None else "TLS"
    try:
        await hello(session, hostname)  # RFC 3207: forget what was said before TLS
    except (ssl.SSLError, OSError) as e:
        # with TLS 1.3 a server that dislikes the handshake says so only now
        session.close()
        raise tls_failed(remote, e, mode) from None


async def auth(session: Session, policy: Policy, password: str) -> None:
    remote, user = session.remote, policy.username
    if not session.tls:
        raise fail("4.7.0", f"not sending the password for {user} to {remote} without TLS",
                   remote)
    if not session.supports("auth"):
        raise fail("4.7.0", f"cannot authenticate at {remote}: SMTP AUTH extension not "
                   "supported by server.", remote)
    secret = password.encode()
    if "plain" in session.auth_types:
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + secret)
        reply = await session.command(b"AUTH", b"PLAIN", token)
    elif "login" in session.auth_types:
        reply = await session.command(b"AUTH", b"LOGIN")
        for answer in (user.encode(), secret):
            if reply.code != 334:
                break
            reply = await session.command(base64.b64encode(answer))
    else:
        raise fail("4.7.0", f"cannot authenticate at {remote}: No suitable authentication "
                   "method found.", remote)
    if reply.code != 235:
        raise fail("4.7.0", f"authentication as {user} at {remote} failed: {reply.code} "
                   f"{reply.message}", remote)
