"""The ``relay`` courier: mail handed to a named relay host (mailertable ``relay:[host]``,
the smart host, or the null-client hub), with per-relay settings.

``[[delivery.relays]]`` entries are matched by the route's host string as written
(``[mailrelay.ed.example.ac.uk]``), then by the bare host name, so ``[relay]:587`` finds
the entry for ``[relay]``. An entry gives the port (the route's own ``:port`` wins), the TLS
mode (``required`` / ``opportunistic`` / ``never``) and optional AUTH credentials:
``username`` and ``password_file`` (relative to the site home, read at each delivery so
it can be rotated). The password is only ever sent over TLS. A host without an entry gets
port 25 and ``[delivery] starttls``.

A host without brackets is looked up by MX, as sendmail's relay mailer does.
"""

from __future__ import annotations

from postroom.delivery.esmtp import client_for
from postroom.delivery.mx import Destination, MxResolver, parse_destination
from postroom.delivery.smtp_client import Policy, bad_destination, destination_of
from postroom.site import RelayHost, Site
from postroom.types import Attempt, Job


def relay_settings(site: Site, host: str) -> RelayHost | None:
    """The ``[[delivery.relays]]`` entry for a route host, or None."""
    relays = site.profile.delivery.relays
    wanted = host.strip().lower()
    for r in relays:
        if r.host.strip().lower() == wanted:
            return r
    try:
        name = parse_destination(host).name
    except ValueError:
        return None
    for r in relays:
        try:
            if parse_destination(r.host).name == name:
                return r
        except ValueError:
            continue
    return None


class RelayCourier:
    def __init__(self, site: Site, resolver: MxResolver | None = None, *,
                 idle_timeout: float = 5.0) -> None:
        self.site = site
        self.resolver = resolver or MxResolver.from_site(site)
        self.client = client_for(site, self.resolver, idle_timeout=idle_timeout)

    def policy(self, host: str, destination: Destination) -> Policy:
        relay = relay_settings(self.site, host)
        if relay is None:
            return Policy(port=destination.port or 25, tls=self.site.profile.delivery.starttls)
        return Policy(port=destination.port or relay.port, tls=relay.tls,
                      ca_file=self.site.path(relay.ca_file) if relay.ca_file else None,
                      username=relay.username,
                      password_file=self.site.path(relay.password_file)
                      if relay.password_file else None)

    async def deliver(self, job: Job) -> list[Attempt]:
        destination = destination_of(job)
        if isinstance(destination, str):
            return bad_destination(job, destination)
        return await self.client.deliver(job, destination, self.policy(job.host, destination))

    async def aclose(self) -> None:
        await self.client.aclose()
