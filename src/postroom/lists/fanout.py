"""Fan-out: an accepted post goes into the queue as messages of kind ``list-post`` of at
most ``ENVELOPE_RECIPIENTS`` members each, and each member's copy is rendered at delivery
time (``renderer``): the envelope sender is the member's VERP address, so a bounce names
the member, and the copy carries the member's own RFC 8058 unsubscribe link. Rendered per
member: 10,000 members cost ten queue writes, not 10,000. The ARC set is made once per
message, over what every member gets (its signature does not cover the member's own
headers, added after it); each copy is then DKIM-signed for the list's domain after its
last header change, so the signature covers the member's ``List-Unsubscribe`` and
``List-Unsubscribe-Post`` as RFC 8058 asks. One RSA signature a copy instead of three.

Why envelopes of bounded size (Postfix's recipient limits, Mailman's ``max_recipients``):
an envelope is read, held and rewritten whole by every delivery round. One envelope for
a 100,000-member post is some 40 MB of objects in memory and 33 MB of JSON; writing it
once took 140 MB more, reading it back 190 MB. Envelopes of 1,000 members keep every
round's work, and what a crash can leave half done, to one envelope's size; the members
are read from the store a page at a time, in address order, and never held all at once.
How far the engine got with a post is in its fan-out record (``queue.journal``), so a
post taken up again after a crash queues only the members not queued before."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from postroom.envelope import Delivery, Envelope
from postroom.lists import store, tokens
from postroom.lists.decorate import UnsubscribeLinks, personalise
from postroom.lists.model import ListSettings, Member
from postroom.queue import accept
from postroom.routing.resolve import Resolver
from postroom.signing import for_site as outgoing_for
from postroom.site import Site
from postroom.types import Render

KIND = "list-post"
ENVELOPE_RECIPIENTS = 1000  # members per queued message of a post


def post_envelope(settings: ListSettings, members: Iterable[Member], resolver: Resolver,
                  hostname: str) -> Envelope:
    """The queue envelope of ``members`` (a slice of the list, ``ENVELOPE_RECIPIENTS`` at
    most): a recipient per member with a deliverable route."""
    recipients = []
    for m in members:
        routes = resolver.resolve(m.address).routes
        r = accept.make_recipient(m.address, routes, notify=["NEVER"])
        if r.deliveries:
            recipients.append(r)
    env = accept.new_envelope(settings.service("bounces"), recipients, protocol="local",
                              kind=KIND, client_addr="", helo=hostname)
    env.list_post = settings.address
    env.arrival = time.time()
    return env


def slices(pages: Iterable[list[Member]], *, after: str = "", after_listed: bool = True,
           size: int = ENVELOPE_RECIPIENTS) -> Iterator[list[Member]]:
    """The members of ``pages`` (in the store's address order) in slices of ``size``,
    leaving out those up to ``after`` (queued by an earlier attempt). Each slice is made
    as the pages are read: a list of any size is never held whole.

    The members up to ``after`` are those the store reads before it, in the database's
    own collation (PostgreSQL's may not be Python's string order): with ``after_listed``
    (``after`` is still a member who takes posts) they are skipped until it has been
    read; else (it left meanwhile) by Python's order, the best guess left."""
    part: list[Member] = []
    skipping = bool(after) and after_listed
    for page in pages:
        for m in page:
            if skipping:
                skipping = m.address != after
                continue
            if after and not after_listed and m.address <= after:
                continue
            part.append(m)
            if len(part) == size:
                yield part
                part = []
    if part:
        yield part


class Renderer:
    """What the runner calls for a ``list-post`` message: the list's settings and secret
    are read once per message (a cache of a few seconds keeps a fan-out of many rounds
    from asking the store again and again)."""

    def __init__(self, site: Callable[[], Site], web_base: str = "") -> None:
        self.site = site
        self.web_base = web_base
        self._cache: dict[str, tuple[float, store.ListTarget | None]] = {}

    def _target(self, address: str) -> store.ListTarget | None:
        now = time.monotonic()
        hit = self._cache.get(address)
        if hit is not None and now - hit[0] < 5.0:
            return hit[1]
        target = store.target_for(self.site(), address)
        self._cache[address] = (now, target)
        return target

    def __call__(self, env: Envelope, message: bytes) -> Render:
        target = self._target(env.list_post)
        if target is None:  # the list is gone: its members still get the post as queued
            return lambda d: (env.sender, message)
        settings = target.settings
        secret = target.secret.encode()
        links = UnsubscribeLinks.for_list(settings, self.web_base)
        outgoing = outgoing_for(self.site())
        made: list[bytes] = []  # sealed (and, copies all alike, signed) at the first copy

        def common() -> bytes:
            if not made:  # two threads at once would make the same bytes
                sealed = outgoing.seal(message)
                made.append(sealed if links.web_base else
                            outgoing.sign(sealed, settings.domain))
            return made[0]

        def render(d: Delivery) -> tuple[str, bytes]:
            member = d.address
            sender = tokens.verp_sender(settings.name, settings.domain, member)
            if not links.web_base:  # no member's own headers: every copy is the same
                return sender, common()
            token = tokens.unsubscribe_token(secret, settings.list_id, member)
            return sender, outgoing.sign(personalise(common(), member, token, links),
                                         settings.domain)

        return render
