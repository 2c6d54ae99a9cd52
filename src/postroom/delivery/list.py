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

from postroom.envelope import Envelope
from postroom.errors import DeliveryError
from postroom.types import Attempt, Job, deferred, describe, from_error, sent

log = logging.getLogger(__name__)

ListHandler = Callable[[Envelope, bytes, str, str], Awaitable[None]]


class ListCourier:
    def __init__(self, handler: ListHandler | None = None) -> None:
        self.handler = handler

    async def deliver(self, job: Job) -> list[Attempt]:
        attempts = []
        for d in job.deliveries:
            if self.handler is None:
                attempts.append(deferred(d, "list engine not available"))
                continue
            try:
                await self.handler(job.envelope, job.message, d.user, d.address)
            except DeliveryError as e:
                attempts.append(from_error(d, e))
            except Exception as e:  # unexpected: temporary, never a bounce
                log.exception("%s: list engine failed for %s", job.queue_id, d.user)
                attempts.append(deferred(d, f"list engine error: {describe(e)}"))
            else:
                attempts.append(sent(d, f"accepted by list {d.user}"))
        return attempts

    async def aclose(self) -> None:
        return None
