"""The SRS secrets file, ``SITE/keys/srs.secret`` (``[srs] secret_file``)::

    # SRS secrets, newest first: the first signs new addresses, every one is accepted.
    Xk3...base64...  2026-12-01T12:00:00Z
    9fQ...base64...  2026-06-01T08:30:00Z

One secret a line with the time it was made. ``postroom srs rotate`` puts a new secret
first and drops a retired one once the secret that replaced it is older than ``max_age``
days: every address the retired one signed has expired by then, so nothing that could
still bounce is refused. The file is made (0600) by ``postroom init`` and by ``serve`` when
it is missing; made with a link, so two processes that race both end up with one secret.
"""

from __future__ import annotations

import calendar
import os
import secrets as random
import time
from pathlib import Path

from postroom.safeio import atomic_replace

HEADER = ("# SRS secrets, newest first: the first signs new addresses, every one is "
          "accepted.\n# Rotate with 'postroom srs rotate'; keep this file secret (0600).\n")
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def read(path: Path) -> list[tuple[bytes, float]]:
    """(secret, made at) newest first; [] when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        made = 0.0
        if len(fields) > 1:
            try:
                made = float(calendar.timegm(time.strptime(fields[1], _STAMP)))
            except ValueError:
                made = 0.0
        out.append((fields[0].encode(), made))
    return out


def _render(entries: list[tuple[bytes, float]]) -> bytes:
    lines = [f"{s.decode()}  {time.strftime(_STAMP, time.gmtime(made))}\n"
             for s, made in entries]
    return (HEADER + "".join(lines)).encode()


def new_secret() -> bytes:
    return random.token_urlsafe(32).encode()


def ensure(path: Path) -> bool:
    """Make the file with one fresh secret unless it exists; True when made here."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, _render([(new_secret(), time.time())]))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)   # fails if another process made it first: keep theirs
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def rotate(path: Path, max_age_days: int, now: float | None = None) -> tuple[int, int]:
    """A new secret first; returns (secrets kept, secrets dropped)."""
    now = time.time() if now is None else now
    old = read(path)
    kept: list[tuple[bytes, float]] = []
    dropped = 0
    successor = now  # the newest secret (made now) replaces the current one
    for secret, made in old:
        if now - successor > max_age_days * 86400:
            dropped += 1  # everything it signed is expired
        else:
            kept.append((secret, made))
        successor = made or successor
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_replace(path, _render([(new_secret(), now), *kept]), mode=0o600)
    return len(kept) + 1, dropped
