"""Assemble the long-lived parts of a site (profile, maps, list source, resolver) in one
place, for the commands and for ``serve``. Reloading builds a new set and swaps it in
only when every file is good."""

from __future__ import annotations

import os
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
