"""Deciding held posts from the web and the API, as ``postroom held`` does: approve (the
handlers and fan-out, not the rules), reject (the sender is told why), discard. Each is
checked against the list the caller named, so a moderator of one list cannot decide
another list's post by guessing its id."""

from __future__ import annotations

from postroom.errors import PostroomError
from postroom.lists import approval
from postroom.lists import held as held_posts
from postroom.runner.inject import inject_from_command
from postroom.runtime import Runtime

APPROVE, REJECT, DISCARD = "approve", "reject", "discard"
ACTIONS = (APPROVE, REJECT, DISCARD)


class NotHere(PostroomError):
    """No such held post on this list."""


def held_of(rt: Runtime, list_address: str, held_id: int) -> tuple[held_posts.Held, bytes]:
    try:
        h, raw = held_posts.get(rt.site, held_id)
    except (PostroomError, OSError):
        raise NotHere(f"no held post {held_id} on {list_address}") from None
    if h.list_address != list_address:
        raise NotHere(f"no held post {held_id} on {list_address}")
    return h, raw


def decide(rt: Runtime, list_address: str, held_id: int, action: str,
           reason: str = "") -> str:
    """Carry out ``action``; what was done, in words."""
    held_of(rt, list_address, held_id)  # on this list, or NotHere
    if action == APPROVE:
        qid = approval.approve(rt, held_id)
        return f"approved; queued as {qid}" if qid else \
            "approved; the list has no member to send it to"
    if action in (REJECT, DISCARD):
        from postroom.lists.moderation import refuse

        for made in refuse(rt, held_id, reason=reason, tell=action == REJECT):
            inject_from_command(*made, site=rt.site)
        return "rejected, sender told" if action == REJECT else "discarded"
    raise PostroomError(f"unknown action {action!r}: approve, reject or discard")
