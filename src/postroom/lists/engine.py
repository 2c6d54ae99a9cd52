"""The list engine behind the ``list`` courier: what happens to mail for a list address.

    LIST@               a post: pipeline.POSTING, then fan-out and archive, or held
    LIST-owner@         a copy to every owner
    LIST-bounces[+VERP] a bounce: the member it names gets a bounce score
    LIST-request@, -join@, -leave@, -confirm+TOKEN@   subscriptions (``subscribe``)

Every message the engine sends (fan-out, notices to moderators and senders) enters the
queue through ``inject``; the engine itself never speaks SMTP. Store and DNS work runs in
a thread, so the event loop keeps taking mail meanwhile. A post is taken (the courier's
SENT) only once its fan-out is durable in the queue, or it is held or refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from postroom import maillog
from postroom.envelope import Envelope
from postroom.errors import PermanentFailure, PostroomError
from postroom.lists import archive, bounces, digest, fanout, held, moderation, store, subscribe
from postroom.lists.context import PostContext, TxtLookup
from postroom.lists.dmarc import DnsTxt
from postroom.lists.model import DeliveryMode, ListSettings, RuleAction
from postroom.lists.notices import notice
from postroom.lists.pipeline import HANDLERS, POSTING, run
from postroom.queue.journal import FanoutRecord, Progress
from postroom.runner.inject import Paced
from postroom.runner.runner import QueueRunner
from postroom.runtime import Runtime
from postroom.site import Site

Inject = Callable[[Envelope, bytes], Awaitable[str]]


class ListEngine:
    def __init__(self, runtime: Callable[[], Runtime], inject: Inject, *,
                 dns: TxtLookup | None = None, web_base: str = "",
                 runner: QueueRunner | None = None) -> None:
        """``runner``: the server process's, whose fan-outs are paced (``Paced``); a
        command has none and injects every message at once."""
        self.runtime = runtime
        self.inject = inject
        self.runner = runner
        self.web_base = web_base
        self._dns = dns

    @property
    def dns(self) -> TxtLookup:
        if self._dns is None:
            d = self.runtime().site.profile.dns
            self._dns = DnsTxt(d.nameservers, timeout=d.timeout)
        return self._dns

    async def handle(self, envelope: Envelope, message: bytes, list_address: str,
                     rcpt: str = "") -> None:
        """The ``list`` courier's handler; raises a DeliveryError for a refusal."""
        site = self.runtime().site
        if "@" not in list_address:  # a Mailman pipe alias names the list alone
            list_address = await asyncio.to_thread(_by_name, site, list_address)
        target = await asyncio.to_thread(store.target_for, site, _with_detail(list_address,
                                                                                 rcpt))
        if target is None:
            raise PermanentFailure(550, "5.1.1", f"<{list_address}>: no such list")
        if target.service == "":
            await self.post(target, envelope.sender, message, list_address, envelope.id)
        elif target.service == "owner":
            await self._to_owners(target.settings, envelope.sender, message)
        elif target.service == "bounces":
            for env, body in await asyncio.to_thread(bounces.register, site, target,
                                                     envelope, message):
                await self.inject(env, body)
        elif target.service == "confirm" and (held_id := await asyncio.to_thread(
                moderation.held_for_token, self.runtime(), target, target.detail)) is not None:
            await self.decide_by_reply(target, held_id, envelope.sender, message)
        else:
            for env, body in await asyncio.to_thread(
                    subscribe.handle, site, target, envelope.sender, message):
                await self.inject(env, body)

    # -- posts ------------------------------------------------------------------------------

    def _context(self, target: store.ListTarget, sender: str, raw: bytes,
                 rcpt: str) -> PostContext:
        site = self.runtime().site
        settings = target.settings
        roles = store.roles(site, settings.address)
        moderators = set(roles.moderators) | set(roles.owners) if roles else set()
        return PostContext.from_bytes(
            settings, raw, sender=sender, recipient=rcpt,
            lookup_member=lambda a: store.member(site, settings.address, a),
            is_moderator=lambda a: a.lower() in moderators,
            now=datetime.now(UTC), hostname=site.profile.site.hostname, dns=self.dns,
            secret=target.secret.encode(), web_base=self.web_base)

    async def post(self, target: store.ListTarget, sender: str, raw: bytes,
                   rcpt: str, post_id: str = "") -> None:
        """``post_id``: the queue ID of the post (its fan-out record's name)."""
        ctx = await asyncio.to_thread(self._context, target, sender, raw, rcpt)
        decision = await asyncio.to_thread(run, ctx, POSTING)
        s = target.settings
        if decision is RuleAction.ACCEPT:
            await self.send(ctx, post_id)
        elif decision is RuleAction.HOLD:
            site = self.runtime().site
            held_id = await asyncio.to_thread(
                held.hold, site, s, raw, sender=sender, subject=str(ctx.message["Subject"] or ""),
                message_id=str(ctx.message["Message-ID"] or ""), reason=ctx.reason,
                rule=ctx.decided_by)
            maillog.line(f"list {s.address}: post from <{sender}> held ({held_id}): "
                         f"{ctx.decided_by}: {ctx.reason}")
            await self._tell_moderators(s, held_id, sender, ctx)
        elif decision is RuleAction.REJECT:
            maillog.line(f"list {s.address}: post from <{sender}> rejected: {ctx.reason}")
            if sender:
                await self._inject(notice(s, self.runtime(), to=sender,
                                          subject=f"Your post to {s.address} was rejected",
                                          text=f"Your message to {s.address} was not sent "
                                               f"to the list: {ctx.reason}.\n"))
        else:
            maillog.line(f"list {s.address}: post from <{sender}> discarded: {ctx.reason}")

    async def send(self, ctx: PostContext, post_id: str = "") -> str:
        """An accepted (or approved) post: archive it, keep it for the digest members, then
        queue it for every member who takes each post, ``fanout.ENVELOPE_RECIPIENTS`` to a
        message, read from the store a page at a time; returns the first queue ID.

        In a server process the messages are started a few at a time (``inject.Paced``):
        the post is taken once they are all durable, and the deliveries go on after.
        With ``post_id`` (a post from the queue) every message queued is recorded in the
        post's fan-out record as soon as it is durable, and a post taken up again after a
        crash goes on after the last member recorded (and is not archived again)."""
        assert ctx.outgoing is not None
        rt = self.runtime()
        s = ctx.settings
        record = FanoutRecord(rt.site.queue_dir, post_id) if post_id else None
        done = record.progress(s.address) if record is not None else Progress()
        if not done.messages:
            await asyncio.to_thread(archive.archive, rt.site, s, ctx.message, ctx.outgoing,
                                    ctx.sender)
            await asyncio.to_thread(digest.collect, rt.site, s, ctx.outgoing, ctx.sender)
        listed = bool(done.after) and await asyncio.to_thread(
            _takes_posts, rt.site, s.address, done.after)
        parts = fanout.slices(store.members_for_delivery(rt.site, s.address),
                              after=done.after, after_listed=listed)
        hostname = rt.site.profile.site.hostname
        put = Paced(self.runner).put if self.runner is not None else self.inject
        qids: list[str] = []
        members = 0
        # the store is read in a thread; routing (not thread-safe) in the event loop,
        # one slice at a time
        while (part := await asyncio.to_thread(next, parts, None)) is not None:
            env = fanout.post_envelope(s, part, rt.resolver, hostname)
            if not env.recipients:
                continue
            qid = await put(env, ctx.outgoing)
            if record is not None:
                record.add(s.address, part[-1].address, len(env.recipients), qid)
            qids.append(qid)
            members += len(env.recipients)
        if done.messages:
            maillog.line(f"list {s.address}: post from <{ctx.sender}> taken up again: "
                         f"{done.members} members were queued before in {done.messages} "
                         "messages, not again")
        if not qids:
            if not done.messages:
                maillog.line(f"list {s.address}: post from <{ctx.sender}> has no member to "
                             "go to")
            return ""
        where = qids[0] if len(qids) == 1 else f"{qids[0]}..{qids[-1]} ({len(qids)} messages)"
        maillog.line(f"list {s.address}: post from <{ctx.sender}> queued as {where} for "
                     f"{members} members")
        return qids[0]

    async def approve(self, held_id: int) -> str:
        """A moderator approved a held post: the handlers (not the rules) and fan-out."""
        rt = self.runtime()
        h, raw = await asyncio.to_thread(held.get, rt.site, held_id)
        target = await asyncio.to_thread(store.target_for, rt.site, h.list_address)
        if target is None:
            raise PermanentFailure(550, "5.1.1", f"<{h.list_address}>: no such list")
        ctx = await asyncio.to_thread(self._context, target, h.sender, raw, h.list_address)
        await asyncio.to_thread(run, ctx, HANDLERS)
        qid = await self.send(ctx)
        await asyncio.to_thread(held.forget, rt.site, h)
        await asyncio.to_thread(moderation.forget_tokens, rt, held_id)
        return qid

    # -- notices ----------------------------------------------------------------------------

    async def _inject(self, made: tuple[Envelope, bytes] | None) -> None:
        if made is not None:
            await self.inject(*made)

    async def _tell_moderators(self, s: ListSettings, held_id: int, sender: str,
                               ctx: PostContext) -> None:
        rt = self.runtime()
        roles = await asyncio.to_thread(store.roles, rt.site, s.address)
        to = sorted(set(roles.moderators) | set(roles.owners)) if roles else []
        target = await asyncio.to_thread(store.target_for, rt.site, s.address)
        if not to or target is None:
            return
        token = await asyncio.to_thread(moderation.decider_token, rt, target, held_id)
        decide_at = f"{s.name}-confirm+{token}@{s.domain}"
        subject = str(ctx.message["Subject"] or "")
        text = (f"A post to {s.address} is held for approval.\n\n"
                f"  From:    {sender}\n  Subject: {subject}\n  Reason:  {ctx.reason}\n\n"
                f"To decide, reply to this message (it goes to {decide_at})\n"
                f"with one of these words as the first line:\n\n"
                f"  approve            send it to the list\n"
                f"  reject REASON      refuse it; the sender is told REASON\n"
                f"  discard            drop it silently\n\n"
                f"Or on the server:  postroom held approve|reject|discard {held_id}\n")
        for addr in to:
            await self._inject(notice(s, rt, to=addr, text=text, reply_to=decide_at,
                                      subject=f"{s.address}: post held for approval "
                                              f"({held_id})"))

    async def decide_by_reply(self, target: store.ListTarget, held_id: int, sender: str,
                              message: bytes) -> None:
        """A reply to a held-post notice: approve, reject or discard, from a moderator."""
        rt = self.runtime()
        s = target.settings
        if not await asyncio.to_thread(moderation.may_decide, rt, s, sender):
            maillog.line(f"list {s.address}: decision on held post {held_id} from "
                         f"<{sender}> ignored: not a moderator or owner")
            return
        word, rest = moderation.reply_command(message)
        if word == "approve":
            qid = await self.approve(held_id)
            maillog.line(f"list {s.address}: held post {held_id} approved by <{sender}>"
                         + (f", queued as {qid}" if qid else ""))
        elif word in ("reject", "discard"):
            for made in await asyncio.to_thread(moderation.refuse, rt, held_id, reason=rest,
                                                tell=word == "reject"):
                await self.inject(*made)
        else:
            await self._inject(notice(
                s, rt, to=sender, subject=f"{s.address}: held post {held_id} not decided",
                text=("Your reply did not say what to do with the held post. Reply to the "
                      "notice again with one of these words as the first line:\n\n"
                      "  approve\n  reject REASON\n  discard\n")))

    async def _to_owners(self, s: ListSettings, sender: str, message: bytes) -> None:
        rt = self.runtime()
        roles = await asyncio.to_thread(store.roles, rt.site, s.address)
        owners = list(roles.owners) if roles else []
        if not owners:
            raise PermanentFailure(550, "5.1.1", f"<{s.service('owner')}>: the list has no "
                                                 "owner")
        from postroom.queue import accept

        recipients = [accept.make_recipient(o, rt.resolver.resolve(o).routes)
                      for o in owners]
        env = accept.new_envelope(s.service("bounces"), [r for r in recipients
                                                         if r.deliveries],
                                  protocol="local", client_addr="",
                                  helo=rt.site.profile.site.hostname)
        if env.recipients:
            await self.inject(env, message)



def _takes_posts(site: Site, list_address: str, address: str) -> bool:
    """Is ``address`` one of the members ``store.members_for_delivery`` reads?"""
    m = store.member(site, list_address, address)
    return m is not None and m.delivery_enabled and m.mode is DeliveryMode.REGULAR


def _with_detail(list_address: str, rcpt: str) -> str:
    """The canonical list address with the ``+detail`` the recipient came with."""
    local = rcpt.rpartition("@")[0]
    if "+" not in local:
        return list_address
    name, _, domain = list_address.rpartition("@")
    return f"{name.partition('+')[0]}+{local.partition('+')[2]}@{domain}"


def _by_name(site: Site, service: str) -> str:
    """``LIST-service`` (from a pipe alias) as the address in the list's own domain."""
    from postroom.store.listnames import SERVICE_SUFFIXES

    name, suffix = service, ""
    for s in SERVICE_SUFFIXES:
        if service.endswith(s):
            name, suffix = service[: -len(s)], s
            break
    try:
        name, domain = store.find_list(site, name)
    except PostroomError as e:
        raise PermanentFailure(550, "5.1.1", f"pipe alias for list {name}: {e}") from None
    return f"{name}{suffix}@{domain}"
