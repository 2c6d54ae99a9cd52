"""The ``list`` courier: the seam where queued list mail meets the list engine.

A list route's user is the list address (canonical, in the list's own domain); its address
is the recipient as it came (with a ``+detail``: a VERP bounce or a confirm token). The
engine (``postroom.lists.engine``) is any callable
``handler(envelope, message, list_address, rcpt) -> Awaitable[None]``: returning means the post is
taken (SENT); a ``TemporaryFailure`` / ``PermanentFailure`` is DEFERRED / FAILED with its
code; anything else it raises is DEFERRED. Without an engine every list delivery is
DEFERRED ``4.3.0 list engine not available``: kept in the queue, never bounced, never dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from postroom.envelope import Delivery, Envelope
from postroom.errors import DeliveryError
from postroom.types import Attempt, Job, deferred, describe, from_error, sent

log = logging.getLogger(__name__)

ListHandler = Callable[[Envelope, bytes, str, str], Awaitable[None]]


class ListCourier:
    def __init__(self, handler: ListHandler | None = None) -> None:
        self.handler = handler

    async def deliver(self, job: Job) -> list[Attempt]:
        return [await self.deliver_to(job, d, d.user) for d in job.deliveries]

    async def deliver_to(self, job: Job, d: Delivery, list_address: str) -> Attempt:
        """One delivery to ``list_address`` (``LIST-service`` alone for a pipe alias: the
        engine finds the list by name)."""
        if self.handler is None:
            return deferred(d, "list engine not available")
        try:
            await self.handler(job.envelope, job.message, list_address, d.address)
        except DeliveryError as e:
            return from_error(d, e)
        except Exception as e:  # unexpected: temporary, never a bounce
            log.exception("%s: list engine failed for %s", job.queue_id, list_address)
            return deferred(d, f"list engine error: {describe(e)}")
        return sent(d, f"accepted by list {list_address}")

    async def aclose(self) -> None:
        return None
