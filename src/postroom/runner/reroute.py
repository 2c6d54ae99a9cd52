"""Routing a waiting message again with the maps as they are now."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from postroom import maillog
from postroom.envelope import Delivery, Envelope
from postroom.routing.resolve import Resolver
from postroom.types import Mailer


def _target(mailer: str, user: str) -> tuple[str, str]:
    """Who a delivery reaches, whatever way: SMTP by MX or by relay is one kind."""
    smtp = mailer in (Mailer.ESMTP, Mailer.RELAY)
    return ("smtp" if smtp else mailer, user.lower())


def _routes_text(deliveries: Iterable[Delivery]) -> str:
    return ", ".join(f"{d.mailer}:{d.user}" for d in deliveries) or "nothing left"


def reroute(env: Envelope, resolver: Resolver) -> None:
    """Route every recipient not yet done again, so that mail waiting for a user whose
    forward changed goes to the new place. Only deliveries not yet final are replaced, and
    never by one to a target that already has a final delivery (sent, or failed and
    bounced), whatever host it went by. A recipient the maps would now refuse keeps the
    routes it was queued with: a mistake in a map must not bounce mail already taken."""
    for r in env.recipients:
        if r.final:
            continue
        routes = resolver.resolve(r.address).routes
        if not routes or not all(x.deliverable for x in routes):
            continue
        final = [d for d in r.deliveries if d.final]
        done_targets = {_target(d.mailer, d.user) for d in final}
        waiting = {_target(d.mailer, d.user): d for d in r.deliveries if not d.final}
        wanted = {}
        for x in routes:
            target = _target(x.mailer, x.user)
            if target not in done_targets:
                wanted[target] = x
        old = {(d.mailer, d.host, d.user) for d in waiting.values()}
        if old == {(x.mailer, x.host, x.user) for x in wanted.values()}:
            continue  # nothing changed for this recipient
        fresh = []
        for target, x in wanted.items():
            d = Delivery.from_route(x)
            before = waiting.get(target)
            if before is not None:  # the same target by another way: keep its history
                d = dataclasses.replace(before, mailer=x.mailer, host=x.host,
                                        user=x.user, address=x.address)
            fresh.append(d)
        r.deliveries = final + fresh
        maillog.line(f"{env.id}: <{r.address}> rerouted by the current maps: "
                     f"{_routes_text(waiting.values())} -> {_routes_text(fresh)}")
