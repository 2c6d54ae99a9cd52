"""Taking over another machine's queue (``postroom queue import``): the spool of a dead
mail hub, mounted or copied here, is read without changing anything but its ``imported/``
directory, and every complete message in it is queued here under a new ID.

What is kept: the sender, each recipient with the state of every delivery (a delivery
already made is not made again), DSN parameters, arrival time, tries and retry schedule,
and held messages stay held. The routes are not trusted: this server's runner routes every
recipient again with its own maps before the first attempt (``QueueRunner._reroute``).

What is skipped: writes that were in progress when the machine died (``tmp/``: they never
got a 250), and envelopes that cannot be read or whose message file is missing; each is
reported with the reason. A message imported has its envelope moved to
``SOURCE/imported/`` (unless ``keep``), so that running the import again does not queue
it twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from postroom.errors import QueueError
from postroom.queue import ids
from postroom.queue.spool import ACTIVE, ENV_SUFFIX, HOLD, MSG, MSG_SUFFIX, Spool, parse_envelope

IMPORTED = "imported"


@dataclass
class Salvage:
    imported: list[tuple[str, str]] = field(default_factory=list)  # (old ID, new ID)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (old ID, why)
    warnings: list[str] = field(default_factory=list)


def queue_dir(source: Path) -> Path:
    """The spool in ``source``: a queue directory itself, or a site home holding one."""
    for candidate in (source, source / "queue"):
        if (candidate / ACTIVE).is_dir() and (candidate / MSG).is_dir():
            return candidate
    raise QueueError(f"{source}: not a postroom queue (no {ACTIVE}/ and {MSG}/ in it or in "
                     f"{source / 'queue'}); give the dead machine's SITE/queue directory")


def import_queue(source: Path, spool: Spool, *, keep: bool = False) -> Salvage:
    src = queue_dir(source)
    if src.resolve() == spool.root.resolve():
        raise QueueError(f"{source}: that is this server's own queue")
    report = Salvage()
    for state in (ACTIVE, HOLD):
        directory = src / state
        if not directory.is_dir():
            continue
        for name in sorted(os.listdir(directory)):
            qid = name.removesuffix(ENV_SUFFIX)
            if not name.endswith(ENV_SUFFIX) or not ids.is_valid(qid):
                continue
            _import_one(src, state, qid, spool, keep, report)
    return report


def _import_one(src: Path, state: str, qid: str, spool: Spool, keep: bool,
                report: Salvage) -> None:
    env_path = src / state / (qid + ENV_SUFFIX)
    try:
        envelope = parse_envelope(env_path.read_bytes())
    except ValueError as e:
        report.skipped.append((qid, f"envelope cannot be read ({e}): {env_path}"))
        return
    except OSError as e:
        report.skipped.append((qid, f"cannot read {env_path}: {e.strerror}"))
        return
    msg_path = src / MSG / (qid + MSG_SUFFIX)
    try:
        data = msg_path.read_bytes()
    except OSError as e:
        report.skipped.append((qid, f"no message file ({e.strerror}): {msg_path}"))
        return
    envelope.id, envelope.held = "", False
    new = spool.put_sync(envelope, data)
    if state == HOLD:
        spool.hold(new)
    report.imported.append((qid, new))
    if keep:
        return
    try:
        (src / IMPORTED).mkdir(exist_ok=True)
        os.rename(env_path, src / IMPORTED / (qid + ENV_SUFFIX))
    except OSError as e:
        report.warnings.append(f"{qid}: imported as {new}, but not marked as imported "
                               f"({e.strerror}); importing {src} again would queue it twice")
