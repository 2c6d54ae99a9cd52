"""Holding couriers to their contract (``postroom.types``): a courier never raises, and
every delivery of a job gets exactly one attempt."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from postroom.envelope import Delivery, Envelope
from postroom.types import Attempt, Courier, Job, Render, deferred, describe

log = logging.getLogger("postroom.runner")
JobKey = tuple[str, str, str]  # (mailer, host in lower case, envelope sender)
# a message rendered per recipient goes out in jobs of at most this many deliveries, so
# that a big list post uses queue.destination_concurrency connections to its destination
FANOUT_CHUNK = 100


def jobs_for(envelope: Envelope, message: bytes, deliveries: list[Delivery], *,
             render: Render | None = None,
             sender: Callable[[Delivery], str] | None = None) -> dict[JobKey, Job]:
    """The deliveries as Jobs by (mailer, host), keeping queue order inside each; host
    names compare without case, as DNS does. ``render``: the message is rendered per
    recipient (``Job.personal``). ``sender``: the envelope sender of each delivery (SRS);
    deliveries with different senders go in different jobs."""
    jobs: dict[JobKey, Job] = {}
    for d in deliveries:
        return_path = envelope.sender if sender is None else sender(d)
        key = (d.mailer, d.host.lower(), return_path)
        job = jobs.get(key)
        if job is None:
            job = jobs[key] = Job(envelope, message, [], envelope.id, render,
                                  None if return_path == envelope.sender else return_path)
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


def fan_out(jobs: dict[JobKey, Job], size: int = FANOUT_CHUNK) -> list[tuple[JobKey, Job]]:
    """The jobs, those rendered per recipient cut into pieces of ``size`` deliveries (one
    transaction each in any case: the pieces only add connections)."""
    out: list[tuple[JobKey, Job]] = []
    for key, job in jobs.items():
        if job.render is None or len(job.deliveries) <= size:
            out.append((key, job))
            continue
        job.recipient(job.deliveries[0])  # the owner map, built once and shared
        for start in range(0, len(job.deliveries), size):
            piece = dataclasses.replace(job, deliveries=job.deliveries[start:start + size])
            piece._owners = job._owners
            out.append((key, piece))
    return out
