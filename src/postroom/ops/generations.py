"""The generations in a backup destination, and the rules that keep the last good one.

    DEST/
      .lock                     flock: one backup writes here at a time
      .partial-NAME/            a generation being written (left by a crash: removed by
                                the next backup, never read)
      NAME/                     a generation (manifest.py); NAME is its UTC time,
                                20261201T120000Z, so names sort by age
      latest -> NAME            the newest promoted generation (a symbolic link, replaced
                                atomically); what ``postroom restore DEST`` takes

A new generation is written beside the old ones as ``.partial-NAME``, read back and
checked against its manifest, renamed to ``NAME`` and marked ``verified``; only then is
``latest`` moved to it. One much smaller than the generation ``latest`` names (a
half-mounted disk, an emptied store) is kept but marked ``held`` and not promoted, unless
forced. Pruning keeps the newest ``keep`` generations and never removes the one ``latest``
names nor the newest verified one; ``mirror.prune`` applies the same rules to a mirror
after each push.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from postroom.errors import EX_TEMPFAIL
from postroom.ops import manifest as mf
from postroom.ops.manifest import BackupError, Manifest
from postroom.safeio import fsync_dir

LATEST = "latest"
LOCK = ".lock"
PARTIAL = ".partial-"


class NotPromoted(BackupError):
    """The new generation is kept but ``latest`` still names the one before it."""

    exit_code = EX_TEMPFAIL


@dataclass(slots=True)
class Generation:
    name: str
    path: Path
    manifest: Manifest | None
    verified: bool
    held: str       # why it was not promoted; "" if it was (or it is not verified)
    latest: bool

    @property
    def status(self) -> str:
        if self.manifest is None:
            return "DAMAGED (no readable manifest)"
        if not self.verified:
            return "UNVERIFIED"
        if self.held:
            return f"held: {self.held}"
        return "latest" if self.latest else "verified"


def latest_name(dest: Path) -> str | None:
    try:
        return os.readlink(dest / LATEST)
    except OSError:
        return None


def generations(dest: Path) -> list[Generation]:
    """Every generation in ``dest``, oldest first."""
    if not dest.is_dir():
        raise BackupError(f"{dest}: no such directory (fix: give the backup destination, "
                          "e.g. /srv/backup/postroom)")
    latest = latest_name(dest)
    out = []
    for name in sorted(os.listdir(dest)):
        path = dest / name
        if name.startswith(".") or name == LATEST or not path.is_dir() or path.is_symlink():
            continue
        try:
            manifest: Manifest | None = mf.read(path)
        except BackupError:
            manifest = None
        try:
            held = (path / mf.HELD).read_text().strip()
        except FileNotFoundError:
            held = ""
        out.append(Generation(name, path, manifest, (path / mf.VERIFIED).exists(), held,
                              name == latest))
    return out


def pick(path: Path) -> Path:
    """The generation ``path`` names: a generation itself, or a destination (its latest)."""
    if (path / mf.MANIFEST).exists():
        return path
    name = latest_name(path)
    if name is None:
        raise BackupError(f"{path}: neither a generation (no {mf.MANIFEST}) nor a backup "
                          f"destination with a {LATEST} generation (fix: 'postroom backup "
                          f"list {path}' and give DEST/GENERATION)")
    return path / name


@contextmanager
def locked(dest: Path) -> Iterator[None]:
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(dest / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"{dest}: another backup is writing here now (fix: wait for "
                              "it, or check for a stuck 'postroom backup')",
                              ) from None
        yield
    finally:
        os.close(fd)


def clear_partials(dest: Path) -> list[str]:
    """Remove what crashed backups left (call with the lock held)."""
    gone = []
    for name in os.listdir(dest):
        if name.startswith(PARTIAL):
            shutil.rmtree(dest / name, ignore_errors=True)
            gone.append(name)
    return gone


def new_name(dest: Path, now: float | None = None) -> str:
    base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    name, n = base, 1
    while (dest / name).exists() or (dest / (PARTIAL + name)).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def publish(dest: Path, staging: Path, manifest: Manifest, *, max_shrink: float,
            force: bool) -> Generation:
    """Verify the staged generation, move it into place, and promote it unless it is much
    smaller than the latest (NotPromoted after it is kept, held). A staged generation that
    fails verification is never published: BackupError, and it stays as ``.partial-``
    until the next backup removes it."""
    mf.write(staging, manifest)
    os.sync()  # every file of the generation on disk before it is checked and named
    bad = mf.problems(staging, manifest)
    if bad:
        raise BackupError(f"the new backup does not match its manifest, so it was not "
                          f"published: {'; '.join(bad[:5])} (the disk of {dest} may be "
                          "failing; the previous generations are untouched)")
    final = dest / manifest.generation
    os.rename(staging, final)
    (final / mf.VERIFIED).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    fsync_dir(final)
    fsync_dir(dest)
    previous = _latest_manifest(dest)
    held = "" if force or previous is None else shrink(previous, manifest, max_shrink)
    if held:
        (final / mf.HELD).write_text(held + "\n")
        fsync_dir(final)
        raise NotPromoted(f"backup {final} kept but not promoted: {held}; {LATEST} still "
                          f"names {previous.generation if previous else '-'} (fix: check the "
                          "site home, then 'postroom backup --force' if the drop is meant)")
    promote(dest, manifest.generation)
    return Generation(manifest.generation, final, manifest, True, "", True)


def shrink(previous: Manifest, new: Manifest, max_shrink: float) -> str:
    """Why ``new`` is much smaller than ``previous`` (more than ``max_shrink`` percent in
    bytes or in files); "" when it is not."""
    for what, old, now in (("bytes", previous.total_bytes, new.total_bytes),
                           ("files", len(previous.files), len(new.files))):
        if old and (old - now) * 100 > max_shrink * old:
            return (f"{now} {what} against {old} in {previous.generation} "
                    f"({(old - now) * 100 / old:.0f} % less, more than {max_shrink:g} %)")
    return ""


def _latest_manifest(dest: Path) -> Manifest | None:
    name = latest_name(dest)
    if name is None:
        return None
    try:
        return mf.read(dest / name)
    except BackupError:
        return None


def promote(dest: Path, name: str) -> None:
    """Point ``latest`` at generation ``name``, atomically."""
    staged = dest / f".{LATEST}.{os.getpid()}"
    staged.unlink(missing_ok=True)
    os.symlink(name, staged)
    os.rename(staged, dest / LATEST)
    fsync_dir(dest)


def prune(dest: Path, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` generations, never the latest one nor the newest
    verified one; the names removed."""
    gens = generations(dest)
    protected = {g.name for g in gens if g.latest}
    verified = [g.name for g in gens if g.verified and g.manifest is not None]
    if verified:
        protected.add(verified[-1])
    kept = {g.name for g in gens[-keep:]} | protected
    gone = []
    for g in gens:
        if g.name not in kept:
            shutil.rmtree(g.path)
            gone.append(g.name)
    if gone:
        fsync_dir(dest)
    return gone
