"""The mail log: one line per event, never a client's control characters."""

from __future__ import annotations

import re
from pathlib import Path

from postroom import maillog


def test_lines_are_clean_and_stamped(tmp_path: Path) -> None:
    log = tmp_path / "log/mail.log"
    maillog.open_log(log, "mail.inf.example.ac.uk")
    try:
        maillog.rejected("RCPT", "evil [192.0.2.9]", "550 5.1.1 <x\r\nFAKE: line>: No such user",
                         sender="a\x1b[31m@example.org")
        maillog.event("starting: é")
    finally:
        maillog.close_log()
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    stamp = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mail postroom\[\d+\]: "
    assert re.fullmatch(stamp + re.escape(
        "reject: RCPT from evil [192.0.2.9]: 550 5.1.1 <x??FAKE: line>: No such user; "
        "from=<a?[31m@example.org>"), lines[0]), lines[0]
    assert re.fullmatch(stamp + "starting: é", lines[1]), lines[1]
