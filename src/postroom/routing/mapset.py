"""All the maps a site's profile names, loaded together and swapped together.

``SiteMaps.load(site)`` reads every file (and every ``:include:`` file they name) before it
returns, so a reload either gets a complete new set or raises MapError and leaves the old
one in force ("last good wins", as chasquid's alias Reload does).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path

from postroom.errors import MapError
from postroom.routing import maps
from postroom.site import Site

INCLUDE = maps.INCLUDE


@dataclass(slots=True)
class SiteMaps:
    aliases: list[maps.Map] = field(default_factory=list)
    forwards: list[maps.Map] = field(default_factory=list)
    virtusertable: list[maps.Map] = field(default_factory=list)
    mailertable: list[maps.Map] = field(default_factory=list)
    local_users: list[maps.Map] = field(default_factory=list)
    includes: dict[str, maps.Map] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        out: list[str] = []
        for group in (self.aliases, self.forwards, self.virtusertable, self.mailertable,
                      self.local_users, list(self.includes.values())):
            for m in group:
                out.extend(m.warnings)
        return out

    @classmethod
    def load(cls, site: Site) -> SiteMaps:
        # Hundreds of thousands of small tuples and no cycles: the collector would only
        # rescan them (about a fifth of the load time for 200k entries).
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            return cls._load(site)
        finally:
            if gc_was_on:
                gc.enable()

    @classmethod
    def _load(cls, site: Site) -> SiteMaps:
        p = site.profile
        fold = not p.routing.local_parts_case_sensitive
        result = cls(
            aliases=[maps.read_aliases(site.path(f), fold_case=fold) for f in p.maps.aliases],
            forwards=[maps.read_aliases(site.path(f), fold_case=fold) for f in p.maps.forwards],
            virtusertable=[maps.read_virtusertable(site.path(f), fold_case=fold)
                           for f in p.maps.virtusertable],
            mailertable=[maps.read_mailertable(site.path(f)) for f in p.maps.mailertable],
            local_users=[maps.read_names(site.path(f), fold_case=fold)
                         for f in p.maps.local_users],
        )
        result._load_includes(site.home)
        return result

    def _load_includes(self, home: Path) -> None:
        todo: list[tuple[str, str, int]] = []
        for m in (*self.aliases, *self.forwards):  # the readers list the :include: targets
            todo.extend((t, m.file, line) for t, line in m.includes)
        while todo:
            target, file, line = todo.pop()
            name = target[len(INCLUDE):].strip()
            if name in self.includes:
                continue
            path = Path(name) if Path(name).is_absolute() else home / name
            if not path.is_file():
                raise MapError(file, line, f"{target}: file {path} does not exist; create it or "
                               "remove the target")
            inc = maps.read_include(path)
            self.includes[name] = inc
            nested = inc.entries[""][0]
            # the line each nested target is on (read_include records it per target)
            todo.extend((t, str(path), int(inc.entries.get(t, (t, 1))[1]))
                        for t in nested  # type: ignore[attr-defined]
                        if t.startswith(INCLUDE))

    def counts(self) -> dict[str, int]:
        return {
            "aliases": sum(map(len, self.aliases)),
            "forwards": sum(map(len, self.forwards)),
            "virtusertable": sum(map(len, self.virtusertable)),
            "mailertable": sum(map(len, self.mailertable)),
            "local_users": sum(map(len, self.local_users)),
            "includes": len(self.includes),
        }
