"""The queue runner: takes each due message from the spool, hands its deliveries to the
couriers, records every attempt in the envelope, and sends the DSNs that are owed.

    due message ─▶ group deliveries by (mailer, host) ─▶ courier.deliver(job) per group
         ▲              (global and per-destination limits)        │ one Attempt per delivery
         │                                                          ▼
     next retry ◀── spool.update(envelope) ◀── expire past lifetime, delay warning, DSNs
                                                └─▶ all final and notified: spool.delete

A message read back from the spool (a retry, or one another process left) is routed again
with the current maps first (``_reroute``); the first attempt uses the routes intake just
made.

Delivery is at least once: the envelope is rewritten (durably) after each round, so a
crash between a courier's success and that rewrite can repeat a delivery, never lose one.
A DSN is queued (durably) before the envelope records that it was sent, for the same
reason. An unexpected error while handling a message leaves it queued and retries it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from postroom import maillog
from postroom.queue import accept, dsn, ids
from postroom.queue.envelope import Delivery, Envelope, RcptState, Recipient
from postroom.queue.limits import SharedLimits, slots_of
from postroom.queue.schedule import retry_delay

if TYPE_CHECKING:
    from postroom.delivery.base import Attempt, Courier
    from postroom.queue.spool import Spool
    from postroom.runtime import Reloader

log = logging.getLogger("postroom.runner")
# what a round may change in an envelope (not its ID or where it is: held or active)
_ENVELOPE_FIELDS = tuple(f.name for f in dataclasses.fields(Envelope)
                         if f.name not in ("id", "held"))
FRESH_SECONDS = 30.0


def _target(mailer: str, user: str) -> tuple[str, str]:
    """Who a delivery reaches, whatever way: SMTP by MX or by relay is one kind."""
    return ("smtp" if mailer in ("esmtp", "relay") else mailer, user.lower())


def _routes_text(deliveries: Iterable[Delivery]) -> str:
    return ", ".join(f"{d.mailer}:{d.user}" for d in deliveries) or "nothing left"


def _arrival(qid: str) -> float:
    """When a message arrived, from its queue ID (0 for IDs not made by postroom)."""
    try:
        return ids.timestamp(qid)
    except ValueError:
        return 0.0


class Claims:
    """Which process is delivering which message, across the processes of one server:
    a one-slot ``SharedLimits`` per message ID, in ``queue/claims``, locked while a runner
    works on the message and freed by the kernel if the process dies. (The spool's own
    flock on the message file is for short changes and must stay free meanwhile, so a
    claim cannot be a flock on that file.) Two IDs that hash alike only make one of them
    wait for the next round."""

    def __init__(self, queue_dir: os.PathLike[str]) -> None:
        self._locks = SharedLimits(os.path.join(queue_dir, "claims"))
        self._held: dict[str, int] = {}

    def take(self, qid: str) -> bool:
        offset = self._locks.try_acquire(slots_of(qid), 1)
        if offset is None:
            return False
        self._held[qid] = offset
        return True

    def release(self, qid: str) -> None:
        offset = self._held.pop(qid, None)
        if offset is not None:
            self._locks.release(offset)

    def close(self) -> None:
        self._locks.close()


class QueueRunner:
    def __init__(self, reloader: Reloader, spool: Spool, couriers: dict[str, Courier],
                 *, clock: Callable[[], float] = time.time, scan: bool = True,
                 leave_fresh: bool = False) -> None:
        """``scan``: look through the whole spool every run_interval (the master); without
        it the runner only delivers what ``take`` hands it (an intake process).
        ``leave_fresh``: leave messages younger than FRESH_SECONDS that nobody has tried yet
        to the intake process that took them in."""
        self.scan = scan
        self.leave_fresh = leave_fresh
        self.claims = Claims(spool.root)
        self.limits = SharedLimits(os.path.join(spool.root, "limits"))
        self.preloaded: dict[str, tuple[Envelope, bytes]] = {}
        self.reloader = reloader
        self.spool = spool
        self.couriers = couriers
        self.clock = clock
        self.due: dict[str, float] = {}      # queue id -> when to look at it again
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.wake = asyncio.Event()
        self.fresh: set[str] = set()         # just queued: look at these without a scan
        self._stop = False
        self._dest_limits: dict[tuple[str, str], asyncio.Semaphore] = {}
        q = reloader.current.site.profile.queue
        self._global = asyncio.Semaphore(q.concurrency)

    @property
    def site(self) -> Any:
        return self.reloader.current.site

    # -- triggers -------------------------------------------------------------------------

    def take(self, env: Envelope, message: bytes) -> None:
        """Intake just queued this message: deliver it now, from memory."""
        self.preloaded[env.id] = (env, message)
        self.notify(env.id)

    def notify(self, qid: str) -> None:
        """A message was just queued: look at it now (no directory scan needed)."""
        self.due[qid] = 0.0
        self.fresh.add(qid)
        self.wake.set()

    def flush(self) -> None:
        """``postroom queue flush``: retry every deferred delivery now."""
        self._flush = True
        for qid in list(self.due):
            self.due[qid] = 0.0
        self.wake.set()

    _flush = False

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Scan the spool every ``run_interval``; between scans, start on messages the
        intake announced (``notify``) at once."""
        interval = self.site.profile.queue.run_interval
        last_scan = -interval
        while not self._stop:
            self.wake.clear()  # before looking: a notify from now on wakes the next wait
            try:
                if self.scan and (self._flush or time.monotonic() - last_scan >= interval):
                    last_scan = time.monotonic()
                    await self.run_once()
                elif self.fresh and not self.site.quiescent:
                    fresh, self.fresh = self.fresh, set()
                    self._start(sorted(fresh), self.clock(), flush=False)
            except Exception:  # never let the runner die: log, wait, go on
                log.exception("queue run failed")
            wait = max(0.0, interval - (time.monotonic() - last_scan)) if self.scan else 3600
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        self._stop = True
        self.wake.set()
        if self.inflight:
            await asyncio.gather(*self.inflight.values(), return_exceptions=True)
        self.claims.close()
        self.limits.close()

    async def run_once(self) -> list[asyncio.Task[None]]:
        """Start work on every due message; returns the tasks (tests await them)."""
        if self.site.quiescent_now():
            return []
        ids = await asyncio.to_thread(self.spool.ids, False)
        present = set(ids)
        for qid in [q for q in self.due if q not in present]:
            del self.due[qid]
        flush, self._flush = self._flush, False
        self.fresh.clear()
        return self._start(ids, self.clock(), flush=flush)

    def _start(self, ids: list[str], now: float, *, flush: bool) -> list[asyncio.Task[None]]:
        tasks = []
        for qid in ids:
            if qid in self.inflight or self.due.get(qid, 0.0) > now:
                continue
            task = asyncio.ensure_future(self._process(qid, flush))
            self.inflight[qid] = task
            task.add_done_callback(lambda _t, q=qid: self.inflight.pop(q, None))
            tasks.append(task)
        return tasks

    async def drain(self) -> None:
        """Run until nothing is due now (tests and ``queue flush`` without a server)."""
        while True:
            tasks = await self.run_once()
            if not tasks:
                return
            await asyncio.gather(*tasks)

    # -- one message ----------------------------------------------------------------------

    async def _process(self, qid: str, flush: bool) -> None:
        from postroom.queue.spool import UnknownMessage

        if self.leave_fresh and qid not in self.preloaded and not flush:
            arrived = _arrival(qid)
            if self.clock() - arrived < FRESH_SECONDS:  # its intake process has it
                self.due[qid] = arrived + FRESH_SECONDS
                return
        if not self.claims.take(qid):  # another process is delivering it right now
            self.due[qid] = self.clock() + 5
            if not self.scan:  # nobody rescans for us: look again shortly
                asyncio.get_running_loop().call_later(0.5, self.notify, qid)
            return
        try:
            pre = self._preloaded(qid)
            env, message = pre or await asyncio.to_thread(self._read, qid)
            if env.held:
                self.due.pop(qid, None)
                return
            if pre is None:  # routed a while ago: the maps may have changed since
                self._reroute(env)
            now = self.clock()
            groups: dict[tuple[str, str], list[Delivery]] = {}
            for d in env.deliveries:
                if not d.final and (flush or d.next_attempt <= now):
                    groups.setdefault((d.mailer, d.host), []).append(d)
            if groups:
                rounds = [self._deliver(env, message, key, ds) for key, ds in groups.items()]
                for attempts in await asyncio.gather(*rounds):
                    self._record(env, attempts)
            await self._settle(env, message)
        except UnknownMessage:
            self.due.pop(qid, None)
        except Exception:
            log.exception("%s: delivery round failed; will retry", qid)
            self.due[qid] = self.clock() + 60
        finally:
            self.claims.release(qid)

    def _reroute(self, env: Envelope) -> None:
        """Route every recipient not yet done again with the maps as they are now, so that
        mail waiting for a user whose forward changed goes to the new place. Only
        deliveries not yet final are replaced, and never by one to a target that already
        has a final delivery (sent, or failed and bounced), whatever host it went by. A
        recipient the maps would now refuse keeps the routes it was queued with: a mistake
        in a map must not bounce mail already taken."""
        resolver = self.reloader.current.resolver
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

    @staticmethod
    def _merge(env: Envelope) -> Callable[[Envelope], bool]:
        """The change that stores this round's envelope over the one on disk, under the
        message's lock, keeping what an admin did meanwhile: a ``postroom queue bounce``
        while this round ran still fails what is left."""

        def merge(disk: Envelope) -> bool:
            reason = disk.returned
            for name in _ENVELOPE_FIELDS:
                setattr(disk, name, getattr(env, name))
            if reason and not env.returned:
                disk.return_to_sender(reason)
            return True

        return merge

    def _preloaded(self, qid: str) -> tuple[Envelope, bytes] | None:
        pre = self.preloaded.pop(qid, None)
        if pre is not None and self.clock() - pre[0].arrival < FRESH_SECONDS:
            return pre  # nobody else may have touched it yet: see leave_fresh
        return None

    def _read(self, qid: str) -> tuple[Envelope, bytes]:
        env = self.spool.load(qid)
        return env, (b"" if env.held else self.spool.read_message(qid))

    async def _deliver(self, env: Envelope, message: bytes, key: tuple[str, str],
                       deliveries: list[Delivery]) -> list[Attempt]:
        from postroom.delivery.base import Job, deferred, deliver_job

        courier = self.couriers.get(key[0])
        if courier is None:
            return [deferred(d, f"no courier for mailer {key[0]}", status="4.3.5")
                    for d in deliveries]
        limit = self._dest_limits.get(key)
        if limit is None:
            limit = self._dest_limits[key] = asyncio.Semaphore(
                self.site.profile.queue.destination_concurrency)
        q = self.site.profile.queue
        # this process's semaphores first (no polling among its own tasks), then the
        # server-wide slots that the other processes see: the destination's before the
        # global one, so that mail waiting for a busy destination holds no global slot
        async with self._global, limit, \
                self.limits.slot(f"{key[0]}:{key[1]}", q.destination_concurrency), \
                self.limits.slot("*", q.concurrency):
            return await deliver_job(courier, Job(env, message, deliveries, env.id))

    def _record(self, env: Envelope, attempts: list[Attempt]) -> None:
        from postroom.delivery.base import Outcome

        q = self.site.profile.queue
        now = self.clock()
        owner = {id(d): r for r in env.recipients for d in r.deliveries}
        for a in attempts:
            a.apply()
            d = a.delivery
            d.last_attempt = now
            if a.outcome is Outcome.SENT:
                stat = f"Sent ({a.reply})"
            elif a.outcome is Outcome.FAILED:
                stat = f"Bounced: {a.reply}"
            else:
                d.next_attempt = now + retry_delay(d.tries, q.retry_initial, q.retry_max)
                stat = f"Deferred: {a.reply}"
            r = owner.get(id(d))
            maillog.delivery(env.id, d.user if "@" in d.user else d.address,
                             r.address if r else "", d.mailer, a.remote or d.mailer,
                             now - env.arrival, d.tries, a.status, stat)

    async def _settle(self, env: Envelope, message: bytes) -> None:
        """Lifetime, delay warning, DSNs; then delete or reschedule."""
        site = self.site
        q = site.profile.queue
        now = self.clock()
        age = now - env.arrival
        if age >= q.lifetime:
            for d in env.deliveries:
                if not d.final:
                    days = q.lifetime / 86400
                    d.state = RcptState.FAILED
                    d.status = "4.4.7"
                    d.last_error = (f"delivery time expired after {days:g} days"
                                    + (f"; last error: {d.last_error}" if d.last_error else ""))
                    maillog.delivery(env.id, d.user, "", d.mailer, d.remote_mta or d.mailer,
                                     age, d.tries, "4.4.7", "Bounced: delivery time expired")
        notices: list[dsn.Notice] = []
        for r in env.recipients:
            for d in r.deliveries:
                if d.final and not d.dsn_sent:
                    action = dsn.final_action(d)
                    if dsn.wants(r, action):
                        notices.append(dsn.Notice(r, d, action))
        if notices:
            await self._send_notice(env, notices, message, lifetime=q.lifetime)
        for r in env.recipients:
            for d in r.deliveries:
                if d.final:
                    d.dsn_sent = True
        if (not env.delay_warned and age >= q.delay_warning and env.sender
                and any(d.state is RcptState.DEFERRED for d in env.deliveries)):
            late = [dsn.Notice(r, d, dsn.DELAYED) for r in env.recipients
                    for d in r.deliveries if d.state is RcptState.DEFERRED
                    and dsn.wants(r, dsn.DELAYED)]
            if late:
                await self._send_notice(env, late, message, lifetime=q.lifetime)
            env.delay_warned = True
        if env.done:
            # in the event loop, like the spool's puts: a rename and a directory fsync
            # cost less than a hand-over to a thread; but never wait there for another
            # process's lock on the message (a queue command, say)
            try:
                self.spool.delete(env.id, wait=False)
            except BlockingIOError:
                await asyncio.to_thread(self.spool.delete, env.id)
            self.due.pop(env.id, None)
            return
        stored = await asyncio.to_thread(self.spool.modify, env.id, self._merge(env))
        if stored.returned and not env.returned:
            self.notify(env.id)  # returned by the postmaster during this round: bounce now
            return
        pending = [d.next_attempt for d in env.deliveries if not d.final]
        self.due[env.id] = min(pending) if pending else now

    async def _send_notice(self, env: Envelope, notices: list[dsn.Notice], message: bytes,
                           *, lifetime: float) -> None:
        site = self.site
        p = site.profile
        postmaster = p.site.postmaster if "@" in p.site.postmaster \
            else f"{p.site.postmaster}@{p.site.domains[0]}"
        if env.sender:
            to, kind = env.sender, "dsn"
        elif env.kind == "double-bounce":
            maillog.line(f"{env.id}: double bounce undeliverable, discarded "
                         f"({len(notices)} recipients)")
            return
        else:
            notices = [n for n in notices if n.action == dsn.FAILED]
            if not notices:
                return
            to, kind = postmaster, "double-bounce"
        body = dsn.build(env, notices, message, hostname=p.site.hostname,
                         postmaster=postmaster, now=self.clock(), lifetime=lifetime, to=to)
        routes = self.reloader.current.resolver.resolve(to).routes
        recipient: Recipient = accept.make_recipient(to, routes)
        if not recipient.deliveries:
            maillog.line(f"{env.id}: DSN to <{to}> has no deliverable route; discarded")
            return
        notice_env = accept.new_envelope("", [recipient], protocol="local", kind=kind,
                                         client_addr="", helo=p.site.hostname)
        notice_env.arrival = self.clock()
        qid = await self.spool.put(notice_env, body)
        maillog.line(f"{env.id}: sender notify: {', '.join(sorted({n.action for n in notices}))}"
                     f"; DSN queued as {qid} to <{to}>")
        self.take(notice_env, body)  # from memory, now: no other process knows of it
