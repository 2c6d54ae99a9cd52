"""The ``esmtp`` courier: mail for other domains, by MX (or to a bracketed host).

Routes look like ``Route("esmtp", "staffmail.example.ac.uk", "user@staffmail...")`` (MX
lookup) or ``Route("esmtp", "[smtp.staffmail.example.ac.uk]", ...)`` (mailertable, no MX).
The port is the route's (``[host]:2526``) or ``[delivery] smtp_port`` (25); TLS follows
``[delivery] starttls``, or a destination's MTA-STS policy (``mtasts``) for MX routes.
The SMTP conversation itself is ``smtp_client.SmtpClient``.
"""

from __future__ import annotations

import dataclasses

from postroom.delivery.mtasts import MtaSts
from postroom.delivery.mx import MxResolver
from postroom.delivery.smtp_client import Policy, SmtpClient, bad_destination, destination_of
from postroom.errors import DeliveryError
from postroom.site import Site
from postroom.types import Attempt, Job


def client_for(site: Site, resolver: MxResolver, *, idle_timeout: float = 5.0) -> SmtpClient:
    """An SmtpClient with the site's hostname, timeouts and batch size."""
    p = site.profile
    return SmtpClient(hostname=p.site.hostname, resolver=resolver,
                      connect_timeout=p.delivery.connect_timeout,
                      command_timeout=p.delivery.command_timeout,
                      recipients_per_transaction=p.queue.recipients_per_transaction,
                      idle_timeout=idle_timeout, max_idle=p.queue.destination_concurrency)


class EsmtpCourier:
    def __init__(self, site: Site, resolver: MxResolver | None = None, *,
                 idle_timeout: float = 5.0) -> None:
        self.site = site
        self.resolver = resolver or MxResolver.from_site(site)
        self.client = client_for(site, self.resolver, idle_timeout=idle_timeout)
        self.sts = MtaSts(site, self.resolver) if site.profile.mta_sts.enabled else None

    async def deliver(self, job: Job) -> list[Attempt]:
        destination = destination_of(job)
        if isinstance(destination, str):
            return bad_destination(job, destination)
        d = self.site.profile.delivery
        policy = Policy(port=destination.port or d.smtp_port, tls=d.starttls)
        if destination.mx and self.sts is not None:
            policy = await self._sts_policy(job, destination.name, policy)
        return await self.client.deliver(job, destination, policy)

    async def _sts_policy(self, job: Job, domain: str, policy: Policy) -> Policy:
        assert self.sts is not None
        sts = await self.sts.policy(domain)
        if sts is None or sts.mode == "none":
            return policy
        if sts.mode == "enforce":
            return dataclasses.replace(policy, tls="verify", mx_names=sts.mx,
                                       mx_policy=domain, ca_file=self.sts.ca_file)
        try:  # testing: delivered as usual; the log says what enforce would refuse
            hosts = [t.host for t in await self.resolver.targets(domain)]
        except DeliveryError:
            return policy
        self.sts.testing_note(sts, hosts, job.queue_id)
        return policy

    async def aclose(self) -> None:
        await self.client.aclose()
