"""What leaves this host, decided per delivery at delivery time and never stored: the
envelope sender each delivery goes out with (SRS for forwarded outside mail), and the
message as it goes to another domain (DKIM-signed and ARC-sealed, after every header
change: ``postroom.signing``).

    delivery of a message ─▶ forwarded outside? ─ yes ─▶ SRS0 sender (srs.policy)
                          └▶ esmtp / relay job  ─────▶ signing.outgoing (sign, seal)

A list post is rendered per member (``Job.render``, the list's VERP sender) and signed in
its render (``lists.fanout``), after the member's own headers; this module only makes a
job's copies in a thread (``prerender``) and stamps our Authentication-Results on
someone else's post as it is handed to the list engine.
"""

from __future__ import annotations

import ipaddress
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from postroom import addresses
from postroom.envelope import Delivery, Envelope
from postroom.runtime import Runtime
from postroom.site import Site
from postroom.srs.policy import FORWARDING_MAILERS
from postroom.types import Job, Mailer, Render

if TYPE_CHECKING:
    from postroom.signing import Outgoing

_OURS_KINDS = frozenset({"dsn", "double-bounce", "list-post"})


def forwarded(rt: Runtime, rcpt: str) -> bool:
    """Did mail for RCPT ``rcpt`` reach us as mail for one of our own addresses?"""
    domain = addresses.split(rcpt)[1]
    if not domain:
        return True
    site = rt.site
    if domain in site.local_domains or domain in site.hosted_domains:
        return True
    return domain[:1] == "[" and rt.resolver.resolve(rcpt).local


def senders(rt: Runtime, env: Envelope) -> Callable[[Delivery], str] | None:
    """The envelope sender of each delivery, when SRS may change some; None when every
    delivery keeps the envelope's."""
    policy = rt.resolver.srs
    if not policy.active or not env.sender or not policy.outside(env.sender):
        return None
    owner = {id(d): r.address for r in env.recipients for d in r.deliveries}
    local: dict[str, bool] = {}

    def sender(d: Delivery) -> str:
        if d.mailer not in FORWARDING_MAILERS:
            return env.sender
        rcpt = owner.get(id(d), d.address)
        if rcpt not in local:
            local[rcpt] = forwarded(rt, rcpt)
        return policy.return_path(env.sender, forwarded=local[rcpt], mailer=d.mailer)

    return sender


# -- the message ----------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _networks(nets: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in nets)


def originated_here(rt: Runtime, env: Envelope) -> bool:
    """Is this our own mail (its From may be signed for): submitted with AUTH, local
    submission, a notice or list post we made, or from an internal machine?"""
    if env.auth_user or env.protocol == "local" or env.kind in _OURS_KINDS:
        return True
    try:
        ip = ipaddress.ip_address(env.client_addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in n for n in _networks(tuple(rt.site.profile.networks.relay)))


_KEYED: weakref.WeakKeyDictionary[Site, bool] = weakref.WeakKeyDictionary()


def _outgoing(site: Site) -> Outgoing | None:
    """The site's signer, or None when it holds no DKIM key. dkimpy, cryptography and
    authres are imported only then: every intake process imports the runner, and a
    restart waits for their start (as for the list engine, ``serve.services``)."""
    keyed = _KEYED.get(site)
    if keyed is None:
        directory = site.path(site.profile.dkim.keys_dir)
        try:
            keyed = any(p.name.endswith(".key") for p in directory.iterdir())
        except OSError:
            keyed = False
        _KEYED[site] = keyed
    if not keyed:
        return None
    from postroom import signing

    return signing.for_site(site)


def changes(rt: Runtime, env: Envelope, job: Job) -> bool:
    """Will ``finish`` change this job's message? (Cheap: no keys, nothing to do.)"""
    if job.render is not None:
        return False  # a list post: signed in its own render
    out = _outgoing(rt.site)
    if out is None:
        return False
    if job.mailer == Mailer.LIST:
        return out.sealing and not originated_here(rt, env)
    if job.mailer not in FORWARDING_MAILERS:
        return False
    return out.dkim_on if originated_here(rt, env) else out.sealing


INLINE_SIGN_MAX = 256 * 1024  # bytes: a larger message is signed in a thread


def signs_only(rt: Runtime, env: Envelope, job: Job) -> bool:
    """Is ``finish``'s work for this job a DKIM signature and nothing else (our own mail
    to another domain), of a message of at most INLINE_SIGN_MAX? That is CPU only, no
    DNS, and short: the runner makes it in the event loop, where the hand-off to a thread
    and back cost more than an ed25519 signature. A signature's cost grows with the
    body, so a large message still goes to a thread."""
    return (job.render is None and job.mailer in FORWARDING_MAILERS
            and len(job.message) <= INLINE_SIGN_MAX and originated_here(rt, env))


def finish(rt: Runtime, env: Envelope, job: Job) -> bytes:
    """The job's message as it is handed over (DNS and signing: run it in a thread).

    To another domain: our own mail DKIM-signed, someone else's assessed and ARC-sealed.
    To the list engine: someone else's post assessed first (before decoration breaks its
    signatures), so that each member's copy can be sealed with what we found."""
    out = _outgoing(rt.site)
    if out is None:
        return job.message
    if job.mailer == Mailer.LIST:
        return out.stamp(job.message)
    if originated_here(rt, env):
        return out.sign(job.message)
    return out.forwarded(job.message)


PRERENDER_LIMIT = 32 * 1024 * 1024  # bytes of copies made at once, at most


def signed_renders(rt: Runtime, job: Job) -> bool:
    """Is this a job rendered per recipient (a list post) whose copies are signed and
    sealed (2 ms each), small enough to render all at once?"""
    return (job.render is not None and job.mailer in FORWARDING_MAILERS
            and _outgoing(rt.site) is not None
            and len(job.message) * len(job.deliveries) <= PRERENDER_LIMIT)


def prerender(job: Job) -> Render:
    """Every delivery's copy made now (in a thread: the signatures would otherwise be
    made one by one in the event loop, in the middle of the SMTP conversation)."""
    render = job.render
    assert render is not None
    copies = {id(d): render(d) for d in job.deliveries}
    return lambda d: copies.get(id(d)) or render(d)
