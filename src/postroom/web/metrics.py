"""Prometheus metrics (``/metrics``), collected when scraped.

    postroom_messages_accepted_total{proto}        from the mail log, since this web
    postroom_deliveries_total{mailer,result}       process started reading it (sent,
                                                   deferred, bounced)
    postroom_queue_messages / _held_messages       the spool now
    postroom_queue_oldest_age_seconds
    postroom_list_held_posts                       posts waiting for a moderator
    postroom_list_posts_archived_total             posts sent to lists (archive rows)
    postroom_web_request_seconds{route,method}     this process's request latencies

The mail counters come from ``log/mail.log`` (the one record every process writes),
read from where the last scrape stopped; the log is the interface, so the web process
shares no memory with the intake processes.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from fastapi import Request
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.responses import Response

from postroom.lists import store
from postroom.site import Site
from postroom.store.models import ArchiveEntry, HeldMessage

REGISTRY = CollectorRegistry()
LATENCY = Histogram("postroom_web_request_seconds", "Web request latency",
                    ["route", "method"], registry=REGISTRY,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

_ACCEPTED = re.compile(r": [0-9A-Za-z]+: from=<[^>]*>, size=\d+, nrcpts=\d+, proto=(\w+)")
_DELIVERY = re.compile(r": [0-9A-Za-z]+: to=<[^>]*>.*?, mailer=([\w-]+), .* stat=(\w+)")


class LogCounters:
    """Counts from the mail log, read incrementally (a rotated log starts again)."""

    def __init__(self) -> None:
        self.accepted: dict[str, int] = {}
        self.deliveries: dict[tuple[str, str], int] = {}
        self._pos = 0
        self._inode = 0
        self._lock = threading.Lock()

    def read(self, path: Path) -> None:
        with self._lock:
            try:
                st = path.stat()
            except OSError:
                return
            if st.st_ino != self._inode or st.st_size < self._pos:
                self._inode, self._pos = st.st_ino, 0
            with open(path, "rb") as f:
                f.seek(self._pos)
                data = f.read(64 * 1024 * 1024)
            end = data.rfind(b"\n") + 1
            self._pos += end
            for line in data[:end].decode("utf-8", "replace").splitlines():
                m = _ACCEPTED.search(line)
                if m:
                    self.accepted[m.group(1)] = self.accepted.get(m.group(1), 0) + 1
                    continue
                m = _DELIVERY.search(line)
                if m:
                    key = (m.group(1), m.group(2).lower())
                    self.deliveries[key] = self.deliveries.get(key, 0) + 1


def queue_state(site: Site) -> tuple[int, int, float | None]:
    """(active messages, held messages, age in seconds of the oldest active one)."""
    active, held = site.queue_dir / "active", site.queue_dir / "hold"
    oldest: float | None = None
    count = 0
    now = time.time()
    with os.scandir(active) if active.is_dir() else _empty() as entries:
        for e in entries:
            if e.name.endswith(".env"):
                count += 1
                try:
                    age = now - e.stat().st_mtime
                except OSError:
                    continue
                msg = site.queue_dir / "msg" / (e.name[:-4] + ".msg")
                try:
                    age = max(age, now - msg.stat().st_mtime)
                except OSError:
                    pass
                oldest = age if oldest is None else max(oldest, age)
    held_count = sum(1 for n in os.listdir(held) if n.endswith(".env")) if held.is_dir() else 0
    return count, held_count, oldest


class _empty:
    def __enter__(self) -> Iterator[os.DirEntry[str]]:
        return iter(())

    def __exit__(self, *exc: object) -> None:
        return None


class SiteCollector(Collector):
    def __init__(self, site: Site, counters: LogCounters) -> None:
        self.site = site
        self.counters = counters

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        site = self.site
        self.counters.read(site.log_path)
        acc = CounterMetricFamily("postroom_messages_accepted", "Messages taken in",
                                  labels=["proto"])
        for proto, n in sorted(self.counters.accepted.items()):
            acc.add_metric([proto], n)
        yield acc
        dl = CounterMetricFamily("postroom_deliveries", "Delivery attempts by result",
                                 labels=["mailer", "result"])
        for (mailer, result), n in sorted(self.counters.deliveries.items()):
            dl.add_metric([mailer, result], n)
        yield dl
        active, held, oldest = queue_state(site)
        yield GaugeMetricFamily("postroom_queue_messages", "Messages in the queue", active)
        yield GaugeMetricFamily("postroom_queue_held_messages", "Messages held in the queue",
                                held)
        yield GaugeMetricFamily("postroom_queue_oldest_age_seconds",
                                "Age of the oldest queued message", oldest or 0.0)
        try:
            posts = store.with_connection(site, lambda c: (
                c.scalar(select(func.count()).select_from(HeldMessage)),
                c.scalar(select(func.count()).select_from(ArchiveEntry))))
        except Exception:  # no store yet: the mail metrics still count
            posts = (0, 0)
        yield GaugeMetricFamily("postroom_list_held_posts", "List posts held for moderators",
                                posts[0] or 0)
        yield CounterMetricFamily("postroom_list_posts_archived",
                                  "List posts accepted and archived", posts[1] or 0)


def exposition(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    ctx = request.app.state.ctx
    registry = CollectorRegistry()
    registry.register(SiteCollector(ctx.site, _counters(request)))
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _counters(request: Request) -> LogCounters:
    state = request.app.state
    if not hasattr(state, "log_counters"):
        state.log_counters = LogCounters()
    counters: LogCounters = state.log_counters
    return counters
