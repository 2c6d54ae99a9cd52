"""The list names the resolver needs, without the ORM: ``postroom verify`` must start fast.

``ListNames`` answers ``lookup(local, domain)`` from memory. For the default SQLite store
``read_sqlite`` reads the names with the standard ``sqlite3`` module (read-only), so a
command that only routes never imports SQLAlchemy; ``store.lists.StoreLists.load`` reads
them through the ORM for any database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

SERVICE_SUFFIXES = ("-request", "-owner", "-bounces", "-join", "-leave", "-confirm")


class ListNames:
    """Every list of the store, read once; answers the resolver without touching the database.

    ``load`` again to see changes (``postroom reload`` builds a new runtime, which does).
    """

    def __init__(self, lists: Iterable[tuple[str, str]], local_domains: Iterable[str]) -> None:
        self.local_domains = frozenset(d.lower() for d in local_domains)
        by_name: dict[str, list[str]] = {}
        for name, domain in lists:
            by_name.setdefault(name.lower(), []).append(domain.lower())
        # preferred domain first: a local domain, then sort order
        self._by_name = {name: sorted(domains, key=lambda d: (d not in self.local_domains, d))
                         for name, domains in by_name.items()}

    def __len__(self) -> int:
        return sum(len(d) for d in self._by_name.values())

    def lookup(self, local: str, domain: str) -> str | None:
        local = local.lower()
        domain = domain.lower().rstrip(".")
        found = self._domain_of(local, domain)
        if found is not None:
            return f"{local}@{found}"
        for suffix in SERVICE_SUFFIXES:
            if local.endswith(suffix):
                name = local[: -len(suffix)]
                found = self._domain_of(name, domain)
                if found is not None:
                    return f"{name}{suffix}@{found}"
        return None

    def _domain_of(self, name: str, domain: str) -> str | None:
        domains = self._by_name.get(name)
        if not domains:
            return None
        if domain in domains:
            return domain
        if domain in self.local_domains:
            return domains[0]
        return None


# -- administration ---------------------------------------------------------------------------


def read_sqlite(path: Path) -> list[tuple[str, str]] | None:
    """(name, domain) of every list in a SQLite store, or None if it has no list table."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, domain FROM mailing_lists").fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return None
        raise
    finally:
        conn.close()
    return [(str(n), str(d)) for n, d in rows]
