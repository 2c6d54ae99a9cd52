"""Approving a held post from outside the server (``postroom held approve``, the web's
moderation): the running server does it, so its fan-out is paced like any post's
(``runner.inject.Paced``) and a big list's copies are not all started at once. With no
server running, the caller does it itself and ``serve`` finds the messages when it
starts."""

from __future__ import annotations

import asyncio

from postroom import control
from postroom.envelope import Envelope
from postroom.errors import PostroomError
from postroom.runner.inject import inject_from_command
from postroom.runtime import Runtime

# a fan-out to 100,000 members queues 100 messages before the server answers
APPROVE_TIMEOUT = 600.0


def approve(rt: Runtime, held_id: int) -> str:
    """Approve held post ``held_id``; the first queue ID ("": the list has no member to
    send it to). Raises PostroomError with the server's reason."""
    reply = control.request(rt.site.state_dir, "approve", str(held_id),
                            timeout=APPROVE_TIMEOUT)
    if reply is not None:
        if not reply.get("ok"):
            raise PostroomError(str(reply.get("error", "the server refused the approval")))
        return str(reply.get("queued", ""))
    return asyncio.run(_approve_here(rt, held_id))


async def _approve_here(rt: Runtime, held_id: int) -> str:
    from postroom.lists.engine import ListEngine

    async def put(env: Envelope, message: bytes) -> str:
        return await asyncio.to_thread(inject_from_command, env, message, site=rt.site)

    engine = ListEngine(lambda: rt, put, web_base=rt.site.profile.web.base_url)
    return await engine.approve(held_id)
