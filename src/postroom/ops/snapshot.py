"""A consistent copy of a site home while ``serve`` runs, into a staging directory, with
the manifest that describes it (``postroom.ops.manifest``).

What is copied: every part of the site home that ``site.home.LAYOUT`` marks as backed up,
and any other file or directory found there (a ``keys/`` directory a later feature adds is
kept too), but not what a machine makes for itself (``state/``, ``export/``) and not the
store's live files. Each file is hashed while it is copied, so the manifest describes the
bytes the copy holds.

Consistency, part by part:

- the SQLite store through SQLite's online backup API (one step: a snapshot of one
  moment, taken while writers go on), then checked with ``PRAGMA quick_check``; a
  PostgreSQL store with ``pg_dump`` (one transaction: also one moment);
- the queue message by message, following the spool's own commit rule (an envelope in
  ``active/`` or ``hold/`` is a queued message): the envelope is read and parsed, then its
  message file, then the envelope is looked for again; a message that finished meanwhile
  is left out, one that moved between ``active/`` and ``hold/`` is taken once. Writes in
  progress (``tmp/``) and spare files (``free/``) are never copied;
- everything else file by file (maps, tls, mail, archives, the log): a file being
  appended to is copied as far as it was written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from postroom.ops.manifest import CHUNK, FILES, PGDUMP, BackupError, Entry, Manifest, sha256_of
from postroom.queue.spool import ACTIVE, CORRUPT, ENV_SUFFIX, HOLD, MSG, MSG_SUFFIX
from postroom.site import Site
from postroom.site.home import LAYOUT, QUEUE, STORE
from postroom.store import db as store_db

# (what, bytes done, bytes in all) after each file
Progress = Callable[[str, int, int], None]
STORE_COPY = "store.sqlite"
NOT_COPIED = frozenset(p.name for p in LAYOUT if not p.backed_up)


@dataclass(slots=True)
class Snapshot:
    manifest: Manifest
    warnings: list[str] = field(default_factory=list)


class _Copier:
    def __init__(self, staging: Path, total: int, progress: Progress | None) -> None:
        self.staging = staging
        self.entries: list[Entry] = []
        self.done = 0
        self.total = total
        self.progress = progress

    def file(self, src: Path, rel: str) -> Entry | None:
        """Copy ``src`` to ``staging/rel`` hashing it; None if it vanished meanwhile."""
        dst = self.staging / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        try:
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                while chunk := fin.read(CHUNK):
                    h.update(chunk)
                    fout.write(chunk)
                    size += len(chunk)
            shutil.copystat(src, dst, follow_symlinks=True)
        except FileNotFoundError:  # removed while the backup ran
            dst.unlink(missing_ok=True)
            return None
        return self._add(rel, size, h.hexdigest())

    def data(self, data: bytes, rel: str) -> Entry:
        dst = self.staging / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        return self._add(rel, len(data), hashlib.sha256(data).hexdigest())

    def existing(self, rel: str) -> Entry:
        """A file already written into the staging directory (the store copies)."""
        size, digest = sha256_of(self.staging / rel)
        return self._add(rel, size, digest)

    def _add(self, rel: str, size: int, digest: str) -> Entry:
        entry = Entry(rel, size, digest)
        self.entries.append(entry)
        self.done += size
        if self.progress is not None:
            self.progress(rel, self.done, max(self.total, self.done))
        return entry


def _store_files(site: Site) -> tuple[str, Path | None]:
    """("sqlite" | "postgresql" | "none", the SQLite file)."""
    url = store_db.store_url(site)
    path = store_db.sqlite_path(url)
    if path is not None:
        return ("sqlite", path) if path.exists() else ("none", None)
    if url.get_backend_name() == "postgresql":
        return "postgresql", None
    raise BackupError(f"database.url {store_db.describe(site)}: only SQLite and PostgreSQL "
                      "stores can be backed up")


def _plain_files(site: Site, skip: set[str], warnings: list[str]) -> list[tuple[Path, str]]:
    """(path, relative name) of every file to copy as it is, in a stable order."""
    out: list[tuple[Path, str]] = []
    home = site.home
    for top in sorted(os.listdir(home)):
        if top in skip:
            continue
        path = home / top
        if path.is_file():
            out.append((path, top))
            continue
        if not path.is_dir():
            warnings.append(f"{path}: not a file or directory; not backed up")
            continue
        for root, dirs, names in os.walk(path):
            for d in list(dirs):
                if os.path.islink(os.path.join(root, d)):
                    warnings.append(f"{os.path.join(root, d)}: a symbolic link to a "
                                    "directory; not followed, not backed up")
                    dirs.remove(d)
            dirs.sort()
            for name in sorted(names):
                full = Path(root) / name
                if full.is_file():
                    out.append((full, str(full.relative_to(home))))
    return out


def _outside(site: Site) -> list[str]:
    """Files the profile names outside the site home: a restore would not have them."""
    p = site.profile
    named = [p.tls.cert, p.tls.key, *p.maps.aliases, *p.maps.forwards, *p.maps.virtusertable,
             *p.maps.mailertable, *p.maps.local_users]
    home = site.home.resolve()
    out = []
    for rel in named:
        path = site.path(rel).resolve()
        if path.exists() and home not in path.parents:
            out.append(f"{path}: named by the profile but outside the site home; not "
                       "backed up (fix: move it into the site home)")
    return out


def _read_queued(q: Path, state: str, qid: str) -> tuple[bytes, bytes] | None:
    """(envelope, message) of a message queued in ``state``, or None if it is not (any
    more). The envelope is parsed (an envelope file replaced and reused meanwhile would
    not be), and looked for again after the message was read: a message deleted while it
    was read is left out, since its message file may have been reused."""
    from postroom.queue.spool import parse_envelope

    env_path = q / state / (qid + ENV_SUFFIX)
    for _ in range(3):
        try:
            env = env_path.read_bytes()
            parsed = parse_envelope(env)
        except FileNotFoundError:
            return None
        except ValueError:
            continue  # read while it was being rewritten in place: read it again
        if parsed.id not in ("", qid):
            continue
        try:
            msg = (q / MSG / (qid + MSG_SUFFIX)).read_bytes()
        except FileNotFoundError:
            return None
        return (env, msg) if env_path.exists() else None
    return None


def _queue(q: Path, copier: _Copier) -> list[str]:
    taken: list[str] = []
    seen: set[str] = set()

    def take(state: str) -> None:
        try:
            names = sorted(os.listdir(q / state))
        except FileNotFoundError:
            return
        for name in names:
            qid = name.removesuffix(ENV_SUFFIX)
            if not name.endswith(ENV_SUFFIX) or qid in seen:
                continue
            got = _read_queued(q, state, qid)
            if got is None:
                continue
            seen.add(qid)
            copier.data(got[0], f"{FILES}/{QUEUE.name}/{state}/{name}")
            copier.data(got[1], f"{FILES}/{QUEUE.name}/{MSG}/{qid}{MSG_SUFFIX}")
            taken.append(qid)

    take(ACTIVE)
    take(HOLD)
    take(ACTIVE)  # a message released from hold/ while hold/ was listed
    corrupt = q / CORRUPT
    for name in sorted(os.listdir(corrupt)) if corrupt.is_dir() else []:
        copier.file(corrupt / name, f"{FILES}/{QUEUE.name}/{CORRUPT}/{name}")
    return sorted(taken)


def _sqlite(path: Path, dst: Path) -> None:
    try:
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as e:
        raise BackupError(f"cannot open the store {path}: {e}") from None
    try:
        out = sqlite3.connect(dst)
        try:
            src.backup(out)  # one step: a snapshot of one moment
            out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            verdict = out.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            out.close()
    except sqlite3.Error as e:
        raise BackupError(f"cannot copy the store {path}: {e}") from None
    finally:
        src.close()
    if verdict != "ok":
        raise BackupError(f"the copy of the store {path} fails SQLite's quick_check "
                          f"({verdict}); the store itself may be damaged: run "
                          f"sqlite3 {path} 'PRAGMA integrity_check'")


def pg_url(site: Site) -> str:
    """The libpq form of the store's URL, for pg_dump and pg_restore."""
    url = store_db.store_url(site).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _pg_dump(site: Site, dst: Path) -> None:
    program = shutil.which("pg_dump")
    if program is None:
        raise BackupError("pg_dump is not installed, and the store is PostgreSQL "
                          "(fix: apt-get install postgresql-client)")
    done = subprocess.run([program, "--format=custom", "--no-owner", "--no-privileges",
                           f"--file={dst}", f"--dbname={pg_url(site)}"],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise BackupError(f"pg_dump of {store_db.describe(site)} failed: "
                          f"{done.stderr.strip() or done.returncode}")


def snapshot(site: Site, staging: Path, name: str, *,
             progress: Progress | None = None) -> Snapshot:
    """Copy the site home into ``staging`` (which must not exist); return its manifest."""
    staging.mkdir(mode=0o700)  # keys, password hashes: for the backup user alone
    warnings = _outside(site)
    kind, sqlite_file = _store_files(site)
    skip = set(NOT_COPIED) | {QUEUE.name, STORE.name}
    if sqlite_file is not None and sqlite_file.parent == site.home:
        skip |= {sqlite_file.name + s for s in ("", "-wal", "-shm", "-journal")}
    plain = _plain_files(site, skip, warnings)
    total = sum(p.stat().st_size for p, _ in plain if p.exists())
    copier = _Copier(staging, total, progress)
    if sqlite_file is not None:
        _sqlite(sqlite_file, staging / STORE_COPY)
        copier.existing(STORE_COPY)
    elif kind == "postgresql":
        _pg_dump(site, staging / PGDUMP)
        copier.existing(PGDUMP)
    queued = _queue(site.queue_dir, copier) if site.queue_dir.is_dir() else []
    for path, rel in plain:
        copier.file(path, f"{FILES}/{rel}")
    manifest = Manifest(generation=name, created=time.time(), site=str(site.home),
                        hostname=site.profile.site.hostname, store=kind,
                        files=copier.entries, queue=queued)
    return Snapshot(manifest, warnings)
