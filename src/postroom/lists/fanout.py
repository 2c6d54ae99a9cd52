"""Fan-out: an accepted post goes into the queue once, as one message with one recipient
per member (kind ``list-post``), and each member's copy is rendered at delivery time
(``renderer``): the envelope sender is the member's VERP address, so a bounce names the
member, and the copy carries the member's own RFC 8058 unsubscribe link. Stored once,
rendered per member: 10,000 members cost one queue write, not 10,000. Each copy is
DKIM-signed (the list's domain) and ARC-sealed last, after the member's own headers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

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


def post_envelope(settings: ListSettings, members: Iterable[Member], resolver: Resolver,
                  hostname: str) -> Envelope:
    """The queue envelope of one post: a recipient per member with a deliverable route."""
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

        def render(d: Delivery) -> tuple[str, bytes]:
            member = d.address
            token = tokens.unsubscribe_token(secret, settings.list_id, member)
            return (tokens.verp_sender(settings.name, settings.domain, member),
                    outgoing.list_copy(personalise(message, member, token, links),
                                       settings.domain))

        return render
