"""Assemble the long-lived parts of a site (profile, maps, list source, resolver) in one
place, for the commands and for ``serve``. Reloading builds a new set and swaps it in
only when every file is good."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postroom import site as site_mod
from postroom.routing.mapset import SiteMaps
from postroom.routing.resolve import ListSource, Resolver


@dataclass(slots=True)
class Runtime:
    site: site_mod.Site
    maps: SiteMaps
    resolver: Resolver


def list_source(site: site_mod.Site) -> ListSource | None:
    """The store's lists, when the store exists (SQLite file present or a database URL).

    The default SQLite store is read with the standard library: no ORM import, so
    ``postroom verify`` starts fast. Other databases go through SQLAlchemy."""
    if not site.profile.database.url:
        path = site.home / "postroom.db"
        if not path.exists():
            return None
        from postroom.store.listnames import ListNames, read_sqlite

        rows = read_sqlite(path)
        return ListNames(rows or (), site.local_domains)
    from postroom.store.lists import StoreLists

    return StoreLists.load(site)


def build(home: str | os.PathLike[str] | Path | None) -> Runtime:
    site = site_mod.load(home)
    maps = SiteMaps.load(site)
    return Runtime(site, maps, Resolver(site, maps, list_source(site)))


def load_resolver(home: str | os.PathLike[str] | Path | None) -> Resolver:
    return build(home).resolver


class Reloader:
    """Holds the runtime in force; ``reload()`` swaps only on success (last good wins)."""

    def __init__(self, home: str | os.PathLike[str] | Path | None) -> None:
        self.home = home
        self.current = build(home)
        self.last_error: str | None = None
        self.on_lists: list[Callable[[], None]] = []  # called when the lists changed

    def reload(self) -> bool:
        from postroom.errors import PostroomError

        try:
            fresh = build(self.home)
        except PostroomError as e:
            self.last_error = str(e)
            return False
        self.current = fresh
        self.last_error = None
        return True

    def refresh_lists(self) -> None:
        """The store's lists changed (created, removed): route with them now, keeping the
        profile and maps in force."""
        rt = self.current
        self.current = Runtime(rt.site, rt.maps, Resolver(rt.site, rt.maps, list_source(rt.site)))
        for changed in self.on_lists:
            changed()


# Keys a running server cannot change without a restart: the sockets it listens on, how
# many intake processes it forks, the store its processes keep connections to.
RESTART_KEYS = ("listeners", "smtp.workers", "database.url", "web.enabled", "web.address",
                "web.port", "web.tls", "web.processes")


def changed_keys(old: site_mod.Site, new: site_mod.Site) -> list[str]:
    """Every profile key (dotted) whose value differs, sections and lists compared whole
    below the second level: ``delivery.relays``, ``listeners``, ``limits.message_size``."""
    a, b = old.profile.model_dump(), new.profile.model_dump()
    out = []
    for section in sorted(set(a) | set(b)):
        va, vb = a.get(section), b.get(section)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += [f"{section}.{k}" for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)]
        elif va != vb:
            out.append(section)
    return out


def needs_restart(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESTART_KEYS)
