"""Holding couriers to their contract (``postroom.types``): a courier never raises, and
every delivery of a job gets exactly one attempt."""

from __future__ import annotations

import logging

from postroom.envelope import Delivery, Envelope
from postroom.types import Attempt, Courier, Job, Render, deferred, describe

log = logging.getLogger("postroom.runner")


def jobs_for(envelope: Envelope, message: bytes, deliveries: list[Delivery], *,
             render: Render | None = None) -> dict[tuple[str, str], Job]:
    """The deliveries as Jobs by (mailer, host), keeping queue order inside each; host
    names compare without case, as DNS does. ``render``: the message is rendered per
    recipient (``Job.personal``)."""
    jobs: dict[tuple[str, str], Job] = {}
    for d in deliveries:
        key = (d.mailer, d.host.lower())
        job = jobs.get(key)
        if job is None:
            job = jobs[key] = Job(envelope, message, [], envelope.id, render)
        job.deliveries.append(d)
    return jobs


async def deliver_job(courier: Courier, job: Job) -> list[Attempt]:
    """Run a courier and hold it to the contract: it never raises, and every delivery of
    the job gets exactly one attempt (a missing one is DEFERRED, never dropped)."""
    try:
        attempts = await courier.deliver(job)
    except Exception as e:  # a courier bug must not bounce mail
        log.exception("%s: courier for %s raised", job.queue_id, job.mailer)
        return [deferred(d, f"internal error in {job.mailer} courier: {describe(e)}")
                for d in job.deliveries]
    by_delivery = {id(a.delivery): a for a in attempts}
    return [by_delivery.get(id(d))
            or deferred(d, f"{job.mailer} courier returned no result for this recipient")
            for d in job.deliveries]
