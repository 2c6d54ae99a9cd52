"""``postroom check``: the seed's post-restore checklist as one command, each item pass,
warn or fail (``check_items.Item``), in the order an operator would go through them:

    profile, maps          the profile and every map file can be read (as reload reads them)
    store                  reachable, and at the newest schema revision
    list L                 each list, with its members and its archive
    probe ADDR             [check] deliverable must be taken, undeliverable refused
    dns NAME, mx DOMAIN    the service names point here (check_net)
    certificate            the submission certificate's name and expiry (check_net)
    quiescent              a quiescent site takes no mail: a warning, not a failure
    queue                  not backing up ([alerts] deferred_count, deferred_age)
    export, backup         the last address export and the last backup are recent

The periodic state (``state/periodic.json``) is passed in by the caller, which reads it
with ``postroom.serve.periodic.read_state``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from postroom.errors import PostroomError
from postroom.ops.backlog import backlog
from postroom.ops.check_items import FAIL, PASS, WARN, Item
from postroom.runtime import Runtime, build
from postroom.site import Site, SiteHome

State = dict[str, dict[str, Any]]


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _store(site: Site) -> list[Item]:
    from postroom.store import db as store_db

    where = store_db.describe(site)
    try:
        revision = store_db.current_revision(site)
        head = store_db.head_revision()
    except PostroomError as e:
        return [Item("store", FAIL, str(e), "check database.url and that the database runs")]
    if revision is None:
        return [Item("store", FAIL, f"{where}: no schema", "postroom db upgrade")]
    if revision != head:
        return [Item("store", FAIL, f"{where}: at {revision}, head is {head}",
                     "postroom db upgrade")]
    return [Item("store", PASS, f"{where}: at {revision} (head)"), *_lists(site)]


def _lists(site: Site) -> list[Item]:
    from sqlalchemy import func, select

    from postroom.store.db import session
    from postroom.store.models import ArchiveEntry, ListMember, MailingList

    with session(site) as s:
        lists = s.execute(select(MailingList.id, MailingList.name, MailingList.domain)
                          .order_by(MailingList.domain, MailingList.name)).all()
        members = dict(s.execute(select(ListMember.list_id, func.count())
                                 .group_by(ListMember.list_id)).all())
        archived = dict(s.execute(select(ArchiveEntry.list_id, func.count())
                                  .group_by(ArchiveEntry.list_id)).all())
    items = []
    for list_id, name, domain in lists:
        address = f"{name}@{domain}"
        n, posts = members.get(list_id, 0), archived.get(list_id, 0)
        folder = site.home / "archives" / address
        files = len(list(folder.glob("*.mbox"))) if folder.is_dir() else 0
        said = f"{address}: {n} members, {posts} archived posts in {files} mbox files"
        if posts and not files:
            items.append(Item(f"list {address}", FAIL, said + f"; {folder} is missing",
                              "restore archives/ from the backup"))
        elif n == 0:
            items.append(Item(f"list {address}", WARN, said,
                              f"postroom members list {address}: was it emptied?"))
        else:
            items.append(Item(f"list {address}", PASS, said))
    return items


def _probes(rt: Runtime) -> list[Item]:
    c = rt.site.profile.check
    if not c.deliverable and not c.undeliverable:
        return [Item("probes", WARN, "no probe addresses in the profile",
                     '[check] deliverable = ["a user", "a list"], undeliverable = '
                     '["nosuch-user"]')]
    items = []
    for address in c.deliverable:
        r = rt.resolver.resolve(address)
        if r.refusal is None:
            where = "; ".join(x.sendmail_line() for x in r.routes if x.deliverable)
            items.append(Item(f"probe {address}", PASS, where))
        else:
            items.append(Item(f"probe {address}", FAIL, f"refused: {r.refusal.text}",
                              f"postroom verify --explain {address}"))
    for address in c.undeliverable:
        r = rt.resolver.resolve(address)
        if r.refusal is not None:
            items.append(Item(f"probe {address}", PASS, f"refused: {r.refusal.text}"))
        else:
            items.append(Item(f"probe {address}", FAIL, "taken: the site would accept mail "
                              "for a made-up address (all mail?)",
                              f"postroom verify --explain {address}"))
    return items


def _queue(rt: Runtime, now: float) -> Item:
    a = rt.site.profile.alerts
    b = backlog(rt.site.queue_dir)
    said = f"{b.queued} queued, {b.deferred} deferred"
    problems = []
    if b.oldest is not None:
        said += f", the oldest deferred since {_ago(now - b.oldest)}"
        if now - b.oldest > a.deferred_age:
            problems.append("the oldest deferred message waits too long")
    if b.deferred > a.deferred_count:
        problems.append(f"more than {a.deferred_count} deferred")
    if b.corrupt:
        problems.append(f"{b.corrupt} envelope(s) in queue/corrupt/")
    if problems:
        return Item("queue", WARN, f"{said}: {'; '.join(problems)}",
                    "postroom queue shows the last error of each")
    return Item("queue", PASS, said)


def _recent(name: str, entry: dict[str, Any] | None, every: float, now: float,
            fallback: float | None, fix: str) -> Item:
    if entry is not None and entry.get("ok") is False:
        return Item(name, FAIL, f"the last run failed: {entry.get('said')}", fix)
    last = (entry or {}).get("last_ok") or fallback
    if last is None:
        return Item(name, WARN, "none recorded on this machine yet", fix)
    if now - last > 2 * every + 60:
        return Item(name, WARN, f"the last one was {_ago(now - last)}", fix)
    return Item(name, PASS, f"the last one was {_ago(now - last)}")


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _schedules(site: Site, state: State, now: float) -> list[Item]:
    p = site.profile
    items = []
    if p.export.every:
        items.append(_recent("export", state.get("export"), p.export.every, now,
                             _mtime(site.home / "export" / "valid-addresses.txt"),
                             "postroom export-addresses (serve writes it at start)"))
    else:
        items.append(Item("export", WARN, "[export] every = 0: serve never writes it",
                          "set [export] every, or run postroom export-addresses by cron"))
    if not p.backup.dest:
        items.append(Item("backup", WARN, "no scheduled backup ([backup] dest is empty)",
                          "set [backup] dest, or run postroom backup DEST by cron"))
    else:
        items.append(_recent("backup", state.get("backup"), p.backup.every, now,
                             _latest_backup(site.path(p.backup.dest)),
                             f"postroom backup {p.backup.dest}"))
    return items


def _latest_backup(dest: Path) -> float | None:
    from postroom.ops import generations, manifest

    name = generations.latest_name(dest)
    try:
        return manifest.read(dest / name).created if name else None
    except PostroomError:
        return None


def _quiescent(home: SiteHome) -> Item:
    if home.quiescent_now():
        return Item("quiescent", WARN, f"QUIESCENT: {home.quiescent_reason()}",
                    "postroom resume, once every other item passes")
    return Item("quiescent", PASS, "taking and delivering mail")


def run_checks(site_dir: str | Path | None, state: State, *,
               now: float | None = None) -> list[Item]:
    from postroom.ops.check_net import cert_item, dns_items
    from postroom.site.load import open_home

    now = time.time() if now is None else now
    try:
        rt = build(site_dir)
    except PostroomError as e:
        items = [Item("profile", FAIL, str(e), "fix that file, then postroom check again")]
        try:
            items.append(_quiescent(open_home(site_dir)))
        except PostroomError:
            pass
        return items
    site = rt.site
    items = [Item("profile", PASS, f"{site.profile_path} is good")]
    counts = ", ".join(f"{k} {v}" for k, v in rt.maps.counts().items())
    if rt.maps.warnings:
        items.append(Item("maps", WARN, f"{counts}; " + "; ".join(rt.maps.warnings),
                          "fix the files named"))
    else:
        items.append(Item("maps", PASS, counts))
    items += _store(site)
    items += _probes(rt)
    items += dns_items(site)
    items.append(cert_item(site, now=now))
    items.append(_quiescent(site))
    items.append(_queue(rt, now))
    items += _schedules(site, state, now)
    return items
