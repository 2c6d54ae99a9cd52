"""Taking over another machine's queue (``postroom queue import``): the spool of a dead
mail hub, mounted or copied here, is read without changing anything but its ``imported/``
directory, and every complete message in it is queued here under a new ID.

What is kept: the sender, each recipient with the state of every delivery (a delivery
already made is not made again), DSN parameters, arrival time, tries and retry schedule,
and held messages stay held (they go straight into ``hold/``). The routes are not
trusted: this server's runner routes every recipient again with its own maps before the
first attempt (``runner.reroute``). Each message goes in through ``runner.inject``, so a
running server is told of it and tries it at once.

What is skipped, each reported with the reason: writes that were in progress when the
machine died (``tmp/``: they never got a 250, so they are not even listed), envelopes that
cannot be read, messages whose file is missing or is not a regular file (a symlink on an
untrusted disk must not make us queue ``/etc/shadow``), and envelopes the dead machine had
already put aside in ``corrupt/`` (for a person to look at).

Never twice: each new envelope records the source ID (``salvaged_from``), and IDs already
here are skipped, so a run interrupted between queueing a message and marking it in the
source, or an ID present in both ``active/`` and ``hold/`` after a crash, does not give two
copies. A message imported has its envelope moved to ``SOURCE/imported/`` (unless
``keep``). A source still used by a running server (its ``queue/lock`` held) is refused.

After a restore (``state/restored.json`` lists the queue IDs of the backup), the dead
machine's queue and the restored one overlap. A message in both, with the same queue ID
and the same Message-ID, is taken once: the restored copy keeps its ID and gets the dead
machine's envelope, which is newer (what it delivered after the backup is not delivered
again) (``merged``). A restored message the dead machine no longer has was finished there
after the backup, delivered or returned: it is removed here (``finished``), when the old
machine's state shows it: its mail log names the ID, or its queue shares IDs with the
backup (so it is the queue the backup was taken of). Without that evidence the copy is
kept, with a warning: a message may arrive twice, none is lost.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from postroom import safeio
from postroom.errors import QueueError
from postroom.queue import ids
from postroom.queue.spool import (
    ACTIVE,
    CORRUPT,
    ENV_SUFFIX,
    HOLD,
    LOCK_FILE,
    MSG,
    MSG_SUFFIX,
    Spool,
    parse_envelope,
)
from postroom.runner import inject_from_command
from postroom.site import SiteHome

IMPORTED = "imported"
MAX_FILE = 1 << 31  # no message in a spool is larger; a bigger "file" is something else


@dataclass
class Salvage:
    imported: list[tuple[str, str]] = field(default_factory=list)  # (old ID, new ID)
    already: list[str] = field(default_factory=list)   # old IDs imported by an earlier run
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (old ID, why)
    warnings: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)    # restored here too: taken once
    finished: list[str] = field(default_factory=list)  # restored, but done on the old machine


def queue_dir(source: Path) -> Path:
    """The spool in ``source``: a queue directory itself, or a site home holding one."""
    for candidate in (source, source / "queue"):
        if (candidate / ACTIVE).is_dir() and (candidate / MSG).is_dir():
            return candidate
    raise QueueError(f"{source}: not a postroom queue (no {ACTIVE}/ and {MSG}/ in it or in "
                     f"{source / 'queue'}); give the dead machine's SITE/queue directory")


def import_queue(source: Path, spool: Spool, site: SiteHome, *, keep: bool = False) -> Salvage:
    src = queue_dir(source)
    if src.resolve() == spool.root.resolve():
        raise QueueError(f"{source}: that is this server's own queue")
    report = Salvage()
    restored = _restored_ids(site, spool)
    with _unused(src):
        done = _already_here(spool)
        seen = set(_listed(src / IMPORTED))
        for state in (ACTIVE, HOLD):
            for qid in _listed(src / state):
                seen.add(qid)
                if qid in done:
                    report.already.append(qid)
                    _mark(src, state, qid, keep, report, f"{qid}: already imported")
                    continue
                if qid in restored and _merge(src, state, qid, spool, report):
                    done.add(qid)
                    _mark(src, state, qid, keep, report, f"{qid}: merged")
                    continue
                new = _import_one(src, state, qid, spool, site, report)
                if new is not None:
                    done.add(qid)
                    _mark(src, state, qid, keep, report, f"{qid}: imported as {new}")
        _finished_there(src, restored, seen, spool, report)
        corrupt = src / CORRUPT
        for name in sorted(os.listdir(corrupt)) if corrupt.is_dir() else []:
            report.skipped.append((name.split(".")[0], f"the dead machine had put its "
                                   f"envelope aside as {corrupt / name}; look at it by hand"))
        if not keep and (src / IMPORTED).is_dir():
            for name in (IMPORTED, ACTIVE, HOLD):
                _fsync_dir(src / name, report)
    return report


@contextmanager
def _unused(src: Path) -> Iterator[None]:
    """Hold the source's spool lock exclusively: no server may be using it."""
    try:
        fd = os.open(src / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield
        return
    except OSError as e:
        raise QueueError(f"cannot open {src / LOCK_FILE}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise QueueError(f"{src}: a postroom process is still using this queue; stop "
                             "it first (or import from a copy)") from None
        yield
    finally:
        os.close(fd)


def _already_here(spool: Spool) -> set[str]:
    found = set()
    for qid in spool.ids():
        try:
            origin = spool.load(qid).salvaged_from
        except QueueError:
            continue
        if origin:
            found.add(origin)
    return found


def _listed(directory: Path) -> list[str]:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise QueueError(f"cannot list {directory}: {e.strerror}") from None
    return [n.removesuffix(ENV_SUFFIX) for n in names
            if n.endswith(ENV_SUFFIX) and ids.is_valid(n.removesuffix(ENV_SUFFIX))]


def _read_regular(path: Path) -> bytes:
    """A regular file's bytes, never through a symlink, never a device or a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE:
            raise OSError(0, "not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def _import_one(src: Path, state: str, qid: str, spool: Spool, site: SiteHome,
                report: Salvage) -> str | None:
    env_path = src / state / (qid + ENV_SUFFIX)
    msg_path = src / MSG / (qid + MSG_SUFFIX)
    try:
        envelope = parse_envelope(_read_regular(env_path))
    except ValueError as e:
        report.skipped.append((qid, f"envelope cannot be read ({e}): {env_path}"))
        return None
    except OSError as e:
        report.skipped.append((qid, f"cannot read {env_path}: {e.strerror or e}"))
        return None
    try:
        data = _read_regular(msg_path)
    except OSError as e:
        report.skipped.append((qid, f"no usable message file ({e.strerror or e}): "
                                    f"{msg_path}"))
        return None
    envelope.id, envelope.held, envelope.salvaged_from = "", False, qid
    try:
        new = inject_from_command(envelope, data, site=site, spool=spool,
                                  held=state == HOLD)
    except QueueError as e:
        report.skipped.append((qid, f"could not be queued here: {e}"))
        return None
    report.imported.append((qid, new))
    return new


def _mark(src: Path, state: str, qid: str, keep: bool, report: Salvage, what: str) -> None:
    if keep:
        return
    try:
        (src / IMPORTED).mkdir(exist_ok=True)
        os.rename(src / state / (qid + ENV_SUFFIX), src / IMPORTED / (qid + ENV_SUFFIX))
    except OSError as e:
        report.warnings.append(f"{what}, but not marked as imported in {src} "
                               f"({e.strerror}); it will not be imported twice")


def _fsync_dir(path: Path, report: Salvage) -> None:
    try:
        safeio.fsync_dir(path)
    except OSError as e:
        report.warnings.append(f"cannot fsync {path}: {e.strerror}")


# -- after a restore: the restored queue and the dead machine's queue overlap

def _restored_ids(site: SiteHome, spool: Spool) -> set[str]:
    """Queue IDs that came back with a restore and are still queued here as restored."""
    import json

    try:
        record = json.loads((site.state_dir / "restored.json").read_text())
        ids_ = {str(q) for q in record.get("queue", [])}
    except (OSError, ValueError, AttributeError):
        return set()
    out = set()
    for qid in ids_ & set(spool.ids()):
        try:
            if not spool.load(qid).salvaged_from:
                out.add(qid)
        except QueueError:
            continue
    return out


def _message_id(data: bytes) -> str:
    from email.parser import BytesHeaderParser

    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return str(BytesHeaderParser().parsebytes(head + b"\n\n").get("Message-ID", "")).strip()


def _merge(src: Path, state: str, qid: str, spool: Spool, report: Salvage) -> bool:
    """The dead machine's envelope for a message restored here (same ID and Message-ID)
    replaces the restored one; False when it is another message after all."""
    try:
        theirs = parse_envelope(_read_regular(src / state / (qid + ENV_SUFFIX)))
        same = _message_id(_read_regular(src / MSG / (qid + MSG_SUFFIX))) == \
            _message_id(spool.read_message(qid))
    except (OSError, ValueError, QueueError):
        return False
    if not same:
        return False
    theirs.id, theirs.salvaged_from = qid, qid
    try:
        spool.update(theirs)
        if state == HOLD:
            spool.hold(qid)
    except QueueError as e:
        report.warnings.append(f"{qid}: restored here and on the old disk, but its state "
                               f"could not be taken over ({e}); the restored copy stays")
        return True
    report.merged.append(qid)
    return True


def _logged(src: Path) -> bytes:
    """The old machine's mail log, when the source is (in) its site home."""
    for home in (src.parent, src):
        log = home / "log" / "mail.log"
        try:
            return _read_regular(log)
        except OSError:
            continue
    return b""


def _finished_there(src: Path, restored: set[str], seen: set[str], spool: Spool,
                    report: Salvage) -> None:
    gone = sorted(restored - seen)
    if not gone:
        return
    log = _logged(src)
    overlap = bool(restored & seen)
    for qid in gone:
        if not overlap and f"{qid}: ".encode() not in log:
            report.warnings.append(f"{qid}: restored here, not in {src}: the old machine may "
                                   "have delivered it after the backup; kept (it may arrive "
                                   "twice)")
            continue
        try:
            spool.delete(qid)
        except QueueError as e:
            report.warnings.append(f"{qid}: finished on the old machine, but cannot be "
                                   f"removed here: {e}")
            continue
        report.finished.append(qid)
