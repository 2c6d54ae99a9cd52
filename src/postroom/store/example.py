"""The ``postroom init`` hook: make the new site's store, and for ``--example`` its list.

The example profile aliases ``postie`` to ``services-unit``, the IS services mailing list,
which lives at ``services-unit@lists.inf.example.ac.uk``.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_LISTS = (("services-unit", "lists.inf.example.ac.uk"),)


def prepare(directory: Path, example: bool) -> None:
    """Upgrade the store of the site in ``directory`` to head; add the example's lists."""
    from postroom import site as site_mod
    from postroom.store import ListExists
    from postroom.store.db import upgrade
    from postroom.store.lists import create_list

    site = site_mod.load(directory)
    upgrade(site)
    if not example:
        return
    for name, domain in EXAMPLE_LISTS:
        try:
            create_list(site, name, domain)
        except ListExists:  # init --force over an existing example site
            pass
