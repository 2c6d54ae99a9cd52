"""Connecting (Postfix's smtp_connect.c): the addresses to try, in order, and one session
opened on one of them.

Every address of every MX host (``mx.MxResolver`` orders the hosts by preference and
spreads equal ones), each with the destination's TLS mode. A connection is refused, times
out (``connect_timeout``, which also covers the greeting) or is greeted with anything but
220: the next address. Then EHLO, STARTTLS and AUTH (``proto``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from postroom.delivery.mx import Destination, MxResolver
from postroom.delivery.smtp import proto
from postroom.delivery.smtp.chat import open_stream
from postroom.delivery.smtp.policy import Policy, TlsContexts, TlsMode
from postroom.delivery.smtp.session import Session
from postroom.delivery.smtp.trouble import TargetFailed, fail, reason
from postroom.errors import TemporaryFailure

log = logging.getLogger("postroom.delivery.smtp_client")


class Target(NamedTuple):
    host: str
    ip: str
    tls: TlsMode


async def targets(resolver: MxResolver, destination: Destination,
                  policy: Policy) -> list[Target]:
    """The addresses to try for a destination, in order."""
    found = await resolver.targets(destination)
    if policy.mx_names:  # MTA-STS enforce: only the MX hosts the policy names
        allowed = [t for t in found if mx_matches(t.host, policy.mx_names)]
        if not allowed:
            raise TemporaryFailure(451, "4.7.5", f"MTA-STS policy of {policy.mx_policy} "
                                   f"(mode enforce, mx: {', '.join(policy.mx_names)}) names "
                                   f"none of its MX hosts: {', '.join(t.host for t in found)}")
        found = allowed
    return [Target(t.host, ip, policy.tls) for t in found for ip in t.addresses]


def mx_matches(host: str, patterns: tuple[str, ...]) -> bool:
    """RFC 8461 4.1: an exact name, or ``*.domain`` for one more label."""
    name = host.lower().rstrip(".")
    for pattern in patterns:
        p = pattern.lower().rstrip(".")
        if name == p or (p.startswith("*.") and name.partition(".")[2] == p[2:]
                         and name.partition(".")[0]):
            return True
    return False


class Connector:
    def __init__(self, *, hostname: str, connect_timeout: float,
                 command_timeout: float) -> None:
        self.hostname = hostname
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.contexts = TlsContexts()

    async def open(self, target: Target, policy: Policy, password: str,
                   route_name: str) -> Session:
        """A session ready for MAIL, or ``TargetFailed``."""
        host, ip, tls = target
        remote = f"{host} [{ip}]"
        writer: asyncio.StreamWriter | None = None
        stage = "greeting"
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await open_stream(ip, policy.port)
                session = Session(reader, writer, host, ip, self.command_timeout,
                                  route_name=route_name)
                greeting = await session.replies.reply()
        except TimeoutError:
            if writer is not None:
                writer.close()
            raise fail("4.4.1", f"connection to {remote} timed out", remote) from None
        except OSError as e:
            if writer is None:
                raise fail("4.4.1", f"cannot connect to {remote}: {reason(e)}",
                           remote) from None
            writer.close()
            raise fail("4.4.2", f"lost connection with {remote} during {stage}: {reason(e)}",
                       remote) from None
        try:
            if greeting.code != 220:
                raise fail("4.4.0", f"{remote} refused to talk to us: {greeting.code} "
                           f"{greeting.message}", remote)
            stage = "EHLO"
            await proto.hello(session, self.hostname)
            stage = "STARTTLS"
            await proto.starttls(session, self.hostname, tls, policy, self.contexts)
            if policy.username:
                stage = "AUTH"
                await proto.auth(session, policy, password)
            log.debug("session with %s (%s)", remote, session.tls or "plain")
            return session
        except TargetFailed:
            session.close()
            raise
        except OSError as e:  # lost, reset, timed out, or not SMTP
            session.close()
            raise fail("4.4.2", f"lost connection with {remote} during {stage}: {reason(e)}",
                       remote) from None
