"""Members from GNU Mailman: ``list_members`` (Mailman 2) and ``mailman members`` (Mailman 3).

Both print one member a line, an address alone or ``Display Name <address>`` (Mailman 2
with ``--fullnames``, Mailman 3 always when a name is known); ``parse_members`` of
``postroom.lists.sync`` reads that. On top of it:

    * ``LIST has no members`` (Mailman 3 for an empty list) is an empty list, not an error;
    * a trailing ``[...]`` annotation (``list_members --nomail`` gives ``[BYUSER]``,
      ``[BYADMIN]``, ``[BYBOUNCE]`` or ``[UNKNOWN]``, the reason delivery is off) is read as
      delivery disabled for that member;
    * ``--digest`` on the command marks the imported members as digest members (for the
      output of ``list_members --digest`` or ``mailman members --digest any``).

Passwords, per-member language, topics, acknowledgements, bounce information and the
list's settings are not in this output and are not imported (docs/lists.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from postroom.lists.model import DeliveryMode, Member
from postroom.lists.sync import parse_line, parse_members

__all__ = ["parse_mailman_members"]

_EMPTY = re.compile(r"^\S+ has no members$")
_NOMAIL = re.compile(r"\s*\[(?P<why>[A-Za-z_ -]*)\]\s*$")


def parse_mailman_members(lines: Iterable[str], source: str, *, digest: bool = False
                          ) -> tuple[list[Member], list[str]]:
    """Members of Mailman ``list_members`` / ``mailman members`` output, and the errors
    (``SOURCE:LINE: ...``, line numbers of the input)."""
    cleaned: list[str] = []
    nomail: set[int] = set()
    for number, line in enumerate(lines):
        text = line.rstrip()
        if _EMPTY.match(text.strip()):
            text = ""
        match = _NOMAIL.search(text)
        if match is not None:
            text = text[: match.start()]
            nomail.add(number)
        cleaned.append(text)
    members, errors = parse_members(cleaned, source)
    if nomail or digest:
        disabled = set()
        for number in nomail:
            parsed = parse_line(cleaned[number])
            if parsed is not None:
                disabled.add(parsed[0])
        mode = DeliveryMode.MIME_DIGEST if digest else DeliveryMode.REGULAR
        members = [Member(m.address, m.display_name, m.address not in disabled, mode)
                   for m in members]
    return members, errors
