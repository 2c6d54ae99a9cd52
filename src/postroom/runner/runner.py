"""The queue runner: takes each due message from the spool, hands its deliveries to the
couriers, records every attempt in the envelope, and sends the DSNs that are owed.

    due message ─▶ group deliveries by (mailer, host) ─▶ courier.deliver(job) per group
         ▲              (global and per-destination limits)        │ one Attempt per delivery
         │                                                          ▼
     next retry ◀── spool.modify(envelope) ◀── expire past lifetime, delay warning, DSNs
                                                └─▶ all final and notified: spool.delete

A message read back from the spool (a retry, or one another process left) is routed again
with the current maps first (``reroute``); the first attempt uses the routes intake just
made. Each round reads one runtime snapshot (profile, maps, resolver) and uses it
throughout, so a reload never changes the rules in the middle of a message.

Delivery is at least once: the envelope is rewritten (durably) after each round, so a
crash between a courier's success and that rewrite can repeat a delivery, never lose one.
A DSN is queued (durably) before the envelope records that it was sent, for the same
reason. An unexpected error while handling a message leaves it queued and retries it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable

from postroom import maillog
from postroom.envelope import Delivery, Envelope, Recipient
from postroom.errors import QueueError
from postroom.queue import dsn, ids
from postroom.queue.journal import SentJournal
from postroom.queue.limits import SharedLimits
from postroom.queue.schedule import retry_delay
from postroom.queue.spool import Spool, UnknownMessage
from postroom.runner import notices, outbound
from postroom.runner.claims import Claims
from postroom.runner.contract import FANOUT_CHUNK, JobKey, deliver_job, fan_out, jobs_for
from postroom.runner.reroute import reroute
from postroom.runtime import Reloader, Runtime
from postroom.site import Site
from postroom.types import Attempt, Courier, Job, Outcome, RcptState, Render, deferred

log = logging.getLogger("postroom.runner")
# what a round may change in an envelope (not its ID or where it is: held or active)
_ENVELOPE_FIELDS = tuple(f.name for f in dataclasses.fields(Envelope)
                         if f.name not in ("id", "held"))
BUSY_RETRY = 5.0      # another process holds the claim: look again after this
# makes the per-recipient render of one message (its envelope and queued bytes)
Renderer = Callable[[Envelope, bytes], Render]


class QueueRunner:
    def __init__(self, reloader: Reloader, spool: Spool, couriers: dict[str, Courier],
                 *, clock: Callable[[], float] = time.time, scan: bool = True,
                 renderers: dict[str, Renderer] | None = None) -> None:
        """``scan``: look through the whole spool every run_interval (the master); without
        it the runner only delivers what is handed to it (an intake process).
        ``renderers``: by envelope kind, what renders such a message per recipient (the
        list engine's, for list posts)."""
        self.scan = scan
        self.renderers = renderers or {}
        self.claims = Claims(spool.root)
        self.limits = SharedLimits(os.path.join(spool.root, "limits"))
        self.journal = SentJournal(spool.root)
        self.preloaded: dict[str, tuple[Envelope, bytes]] = {}
        self.reloader = reloader
        self.spool = spool
        self.couriers = couriers
        self.clock = clock
        self.due: dict[str, float] = {}      # queue id -> when to look at it again
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.wake = asyncio.Event()
        self.fresh: set[str] = set()         # just queued: look at these without a scan
        self._flush_all = False
        self._flush_ids: set[str] = set()
        self._rescan = False
        self._stop = False
        self._limits_of: tuple[int, int] = (0, 0)
        self._global = asyncio.Semaphore(1)
        self._dest_limits: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._semaphores(reloader.current)

    @property
    def site(self) -> Site:
        return self.reloader.current.site

    def _semaphores(self, rt: Runtime) -> None:
        """This process's share of the concurrency limits, made anew when a reload
        changes them (tasks holding the old ones finish with them)."""
        q = rt.site.profile.queue
        wanted = (q.concurrency, q.destination_concurrency)
        if wanted != self._limits_of:
            self._limits_of = wanted
            self._global = asyncio.Semaphore(q.concurrency)
            self._dest_limits = {}

    # -- putting new mail in --------------------------------------------------------------

    async def inject(self, env: Envelope, message: bytes) -> str:
        """Queue a new message durably and give it its first attempt now, from memory.
        The claim is reserved before the message becomes visible, so no other process
        starts on it meanwhile."""
        qid, reserved = await self.put_claimed(env, message)
        self.take(env, message, reserved=reserved)
        return qid

    async def put_claimed(self, env: Envelope, message: bytes) -> tuple[str, bool]:
        """Queue a new message durably, its claim reserved first (False: the claim's slot
        was busy, and the message is read back from disk when its turn comes)."""
        if not env.id:
            env.id = ids.new_id()
        reserved = self.claims.reserve(env.id)
        try:
            qid = await self.spool.put(env, message)
        except BaseException:
            if reserved:
                self.claims.release(env.id)
            raise
        return qid, reserved

    def take(self, env: Envelope, message: bytes, *, reserved: bool = True) -> None:
        """This process just queued ``env`` (its claim reserved): deliver it now, from
        memory. Without the reservation the message is read back after claiming it."""
        if reserved:
            self.preloaded[env.id] = (env, message)
        self.notify(env.id)

    def notify(self, qid: str) -> None:
        """A message was just queued: look at it now (no directory scan needed)."""
        self.due[qid] = 0.0
        self.fresh.add(qid)
        self.wake.set()

    def flush(self, qid: str | None = None) -> None:
        """``postroom queue flush [ID]``: retry every deferred delivery now, or only those
        of one message."""
        if qid is None:
            self._flush_all = True
            for q in list(self.due):
                self.due[q] = 0.0
            # a round already running looked at the clock before the flush: each of those
            # messages gets a flushed round of its own when it ends
            self._flush_ids.update(self.inflight)
        else:
            self._flush_ids.add(qid)
            self.notify(qid)
        self.wake.set()

    def rescan(self) -> None:
        """Scan the spool now (a process died: what it held is free to take over)."""
        self._rescan = True
        self.wake.set()

    def reload(self) -> None:
        """The runtime was reloaded: pick up changed concurrency limits."""
        self._semaphores(self.reloader.current)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Scan the spool every ``run_interval``; between scans, start on messages
        announced (``notify``) at once."""
        last_scan = -float("inf")
        while not self._stop:
            interval = self.site.profile.queue.run_interval
            self.wake.clear()  # before looking: a notify from now on wakes the next wait
            try:
                if self.scan and (self._flush_all or self._rescan
                                  or time.monotonic() - last_scan >= interval):
                    last_scan = time.monotonic()
                    self._rescan = False
                    await self.run_once()
                if self.fresh and not self.site.quiescent_now():
                    fresh, self.fresh = self.fresh, set()
                    self._start(sorted(fresh), self.clock())
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
        self.journal.close()

    async def run_once(self) -> list[asyncio.Task[None]]:
        """Start work on every due message; returns the tasks (tests await them)."""
        if self.site.quiescent_now():
            return []
        ids = await asyncio.to_thread(self.spool.ids, False)
        present = set(ids)
        for qid in [q for q in self.due if q not in present]:
            del self.due[qid]
        self._flush_all, flush = False, self._flush_all
        self.fresh.difference_update(present)
        return self._start(ids, self.clock(), flush=flush)

    def _start(self, ids: list[str], now: float, *,
               flush: bool = False) -> list[asyncio.Task[None]]:
        tasks = []
        for qid in ids:
            if qid in self.inflight:
                continue
            if qid in self.claims.reserved and qid not in self.preloaded:
                continue  # being queued by this process: it is handed over when durable
            one = qid in self._flush_ids
            if not (flush or one) and self.due.get(qid, 0.0) > now:
                continue
            self._flush_ids.discard(qid)
            task = asyncio.ensure_future(self._process(qid, flush or one))
            self.inflight[qid] = task
            task.add_done_callback(functools.partial(self._finished, qid))
            tasks.append(task)
        return tasks

    def _finished(self, qid: str, _task: asyncio.Task[None]) -> None:
        self.inflight.pop(qid, None)
        if qid in self._flush_ids:  # flushed while its round ran: go again now
            self.notify(qid)

    async def drain(self) -> None:
        """Run until nothing is due now (tests and ``queue flush`` without a server)."""
        while True:
            tasks = await self.run_once()
            if not tasks:
                return
            await asyncio.gather(*tasks)

    # -- one message ----------------------------------------------------------------------

    async def _process(self, qid: str, flush: bool) -> None:
        if not self.claims.take(qid):  # another process is delivering it right now
            self.due[qid] = self.clock() + BUSY_RETRY
            if not self.scan:  # nobody rescans for us: look again shortly
                asyncio.get_running_loop().call_later(0.5, self.notify, qid)
            return
        rt = self.reloader.current  # one snapshot for the whole round
        try:
            pre = self.preloaded.pop(qid, None)
            env, message = pre if pre is not None else await asyncio.to_thread(self._read, qid)
            if env.held:
                self.due.pop(qid, None)
                return
            if pre is None:  # routed a while ago: the maps may have changed since
                recorded = self.journal.apply(env)
                if recorded:
                    maillog.event(f"{env.id}: {recorded} deliveries were sent before the "
                                  "last round could record them (a restart); not sent again")
                reroute(env, rt.resolver)
            now = self.clock()
            waiting = [d for d in env.deliveries
                       if not d.final and (flush or d.next_attempt <= now)]
            renderer = self.renderers.get(env.kind)
            render = renderer(env, message) if renderer is not None else None
            jobs = fan_out(jobs_for(env, message, waiting, render=render,
                                    sender=outbound.senders(rt, env)), FANOUT_CHUNK)
            self._journal_progress(env, [job for _, job in jobs])
            if jobs:
                rounds = [self._deliver(rt, key, job) for key, job in jobs]
                for (_, job), attempts in zip(jobs, await asyncio.gather(*rounds),
                                              strict=True):
                    self._record(rt, env, attempts, job)
            await self._settle(rt, env, message)
            self.journal.clear(env.id)  # the envelope on disk (or its deletion) says it all
        except UnknownMessage:
            self.due.pop(qid, None)
        except QueueError as e:  # a full disk, say: the envelope on disk is the last good one
            log.warning("%s: delivery round not recorded: %s; will retry", qid, e)
            maillog.line(f"warning: {qid}: delivery round not recorded: {e}; retry in 60s")
            self.due[qid] = self.clock() + 60
        except Exception:
            log.exception("%s: delivery round failed; will retry", qid)
            self.due[qid] = self.clock() + 60
        finally:
            self.claims.release(qid)

    def _journal_progress(self, env: Envelope, jobs: list[Job]) -> None:
        """Journal each delivery the remote server accepts, at once: after a crash before
        this round stores the envelope, the next round does not send it again (a list
        post sent one transaction per member, most of all)."""
        index = {id(d): i for i, d in enumerate(env.deliveries)}
        recorded: set[int] = set()

        def progress(d: Delivery, reply: str) -> None:
            # reported as the reply arrived, then again once the courier has read it
            if id(d) not in recorded:
                self.journal.record(env.id, index[id(d)], reply)
                recorded.add(id(d))  # only once it is written: else the second report tries

        for job in jobs:
            job.progress = progress

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

    def _read(self, qid: str) -> tuple[Envelope, bytes]:
        env = self.spool.load(qid)
        return env, (b"" if env.held else self.spool.read_message(qid))

    async def _deliver(self, rt: Runtime, job_key: JobKey, job: Job) -> list[Attempt]:
        key = job_key[:2]  # limits and couriers go by (mailer, host), whatever the sender
        courier = self.couriers.get(key[0])
        if courier is None:
            return [deferred(d, f"no courier for mailer {key[0]}", status="4.3.5")
                    for d in job.deliveries]
        q = rt.site.profile.queue
        limit = self._dest_limits.get(key)
        if limit is None:
            limit = self._dest_limits[key] = asyncio.Semaphore(q.destination_concurrency)
        if outbound.changes(rt, job.envelope, job):  # DKIM, ARC: after every header change
            try:
                if outbound.signs_only(rt, job.envelope, job):
                    job.message = outbound.finish(rt, job.envelope, job)
                else:  # DNS (ARC assessment)
                    job.message = await asyncio.to_thread(outbound.finish, rt,
                                                          job.envelope, job)
            except Exception:  # never hold mail back for want of a signature
                log.exception("%s: signing failed; sent as queued", job.queue_id)
        elif outbound.signed_renders(rt, job):  # each member's copy signed: off the loop
            job.render = await asyncio.to_thread(outbound.prerender, job)
        # this process's semaphores first (no polling among its own tasks), then the
        # server-wide slots that the other processes see: the destination's before the
        # global one, so that mail waiting for a busy destination holds no global slot
        async with self._global, limit, \
                self.limits.slot(f"{key[0]}:{key[1]}", q.destination_concurrency), \
                self.limits.slot("*", q.concurrency):
            return await deliver_job(courier, job)

    def _record(self, rt: Runtime, env: Envelope, attempts: list[Attempt],
                job: Job | None = None) -> None:
        q = rt.site.profile.queue
        now = self.clock()
        owner_of: Callable[[Delivery], Recipient | None]
        if job is not None:
            owner_of = job.recipient  # the job's map, built once for all its pieces
        else:
            owners = {id(d): r for r in env.recipients for d in r.deliveries}
            owner_of = lambda d: owners.get(id(d))  # noqa: E731

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
            r = owner_of(d)
            relay = a.remote or (d.host if d.host else d.mailer)
            maillog.delivery(env.id, d.user if "@" in d.user else d.address,
                             r.address if r else "", d.mailer, relay,
                             now - env.arrival, d.tries, a.status, stat,
                             srs=(job.sender or "") if job else "")

    def _expire(self, rt: Runtime, env: Envelope, age: float) -> None:
        lifetime = rt.site.profile.queue.lifetime
        for d in env.deliveries:
            if not d.final:
                d.state = RcptState.FAILED
                d.status = "4.4.7"
                d.last_error = (f"delivery time expired after {lifetime / 86400:g} days"
                                + (f"; last error: {d.last_error}" if d.last_error else ""))
                maillog.delivery(env.id, d.user, "", d.mailer, d.remote_mta or d.mailer,
                                 age, d.tries, "4.4.7", "Bounced: delivery time expired")

    async def _settle(self, rt: Runtime, env: Envelope, message: bytes) -> None:
        """Lifetime, delay warning, DSNs; then delete or reschedule."""
        q = rt.site.profile.queue
        now = self.clock()
        age = now - env.arrival
        if age >= q.lifetime:
            self._expire(rt, env, age)
        owed = notices.owed(env)
        if owed:
            await self._send_notice(rt, env, owed, message)
        for d in env.deliveries:
            if d.final:
                d.dsn_sent = True
        if (not env.delay_warned and age >= q.delay_warning and env.sender
                and any(d.state is RcptState.DEFERRED for d in env.deliveries)):
            late = [dsn.Notice(r, d, dsn.DELAYED) for r in env.recipients
                    for d in r.deliveries if d.state is RcptState.DEFERRED
                    and dsn.wants(r, dsn.DELAYED)]
            if late:
                await self._send_notice(rt, env, late, message)
            env.delay_warned = True
        if env.done:
            # in the event loop: a rename, its directory fsync shared and left to a
            # thread (Spool.delete, delivered); but never wait there for another
            # process's lock on the message (a queue command, say)
            try:
                self.spool.delete(env.id, wait=False, delivered=True)
            except BlockingIOError:
                await asyncio.to_thread(self.spool.delete, env.id, delivered=True)
            self.due.pop(env.id, None)
            return
        stored = await asyncio.to_thread(self.spool.modify, env.id, self._merge(env))
        if stored.returned and not env.returned:
            self._flush_ids.add(env.id)
            self.notify(env.id)  # returned by the postmaster during this round: bounce now
            return
        pending = [d.next_attempt for d in env.deliveries if not d.final]
        self.due[env.id] = min(pending) if pending else now

    async def _send_notice(self, rt: Runtime, env: Envelope,
                           owed: list[dsn.Notice], message: bytes) -> None:
        made = notices.build(rt, env, owed, message, now=self.clock())
        if made is None:
            return
        notice_env, body = made
        qid = await self.inject(notice_env, body)
        to = notice_env.recipients[0].address
        actions = ", ".join(sorted({n.action for n in owed}))
        maillog.line(f"{env.id}: sender notify: {actions}; DSN queued as {qid} to <{to}>")

