"""A backup generation's manifest: what is in it, how big, and its SHA-256, so that a copy
can be checked anywhere, by ``postroom backup verify`` or by hand (``sha256sum``).

A generation is a directory under the backup destination::

    DEST/20261201T120000Z/
      manifest.json    this module's record (written last, before the verification)
      verified         written once every file was read back and matched (the time)
      held             present when the generation is kept but not promoted (the reason)
      files/...        the site home's files, laid out as in the site home; the SQLite
                       store as files/postroom.db (an online-backup copy)
      store.pgdump     a PostgreSQL store (pg_dump custom format), when database.url is one

``manifest.json`` holds ``{"format", "generation", "created", "site", "hostname", "store",
"queue", "files": [{"path", "size", "sha256"}...]}``; paths are relative to the generation.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from postroom.errors import EX_DATAERR, PostroomError
from postroom.safeio import atomic_replace

FORMAT = 1
MANIFEST = "manifest.json"
VERIFIED = "verified"
HELD = "held"
FILES = "files"
PGDUMP = "store.pgdump"
MARKERS = frozenset({MANIFEST, VERIFIED, HELD})
CHUNK = 1 << 20


class BackupError(PostroomError):
    """A backup cannot be taken, read, verified or restored; the message says why and
    what to do."""

    exit_code = EX_DATAERR


@dataclass(slots=True)
class Entry:
    path: str
    size: int
    sha256: str


@dataclass(slots=True)
class Manifest:
    generation: str
    created: float
    site: str                       # the site home it was taken from
    hostname: str
    store: str                      # "sqlite" | "postgresql" | "none"
    files: list[Entry] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)  # queue IDs in the snapshot
    format: int = FORMAT

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.files)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw: dict[str, Any] = json.loads(data)
        files = [Entry(**e) for e in raw.pop("files")]
        return cls(files=files, **raw)


def sha256_of(path: Path) -> tuple[int, str]:
    """(size, hex SHA-256) of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def write(gen: Path, manifest: Manifest) -> None:
    atomic_replace(gen / MANIFEST, manifest.to_json(), mode=0o644)


def read(gen: Path) -> Manifest:
    path = gen / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BackupError(f"{gen}: no {MANIFEST}: not a backup generation, or one whose "
                          "backup never finished (fix: give DEST/GENERATION of a generation "
                          "'postroom backup list DEST' shows)") from None
    except OSError as e:
        raise BackupError(f"cannot read {path}: {e.strerror}") from None
    try:
        manifest = Manifest.from_json(data)
    except (ValueError, TypeError, KeyError) as e:
        raise BackupError(f"{path}: not a readable manifest ({e}); the generation is "
                          "damaged: use another one") from None
    if manifest.format != FORMAT:
        raise BackupError(f"{path}: manifest format {manifest.format}, this postroom reads "
                          f"format {FORMAT} (fix: restore with the postroom that wrote it)")
    return manifest


def walk(gen: Path) -> Iterator[str]:
    """Every file of a generation (relative paths), but its markers."""
    for root, dirs, names in os.walk(gen):
        dirs.sort()
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(root, name), gen)
            if rel not in MARKERS:
                yield rel


def problems(gen: Path, manifest: Manifest | None = None) -> list[str]:
    """What is wrong with a generation: each file of the manifest present with its size and
    SHA-256, and no file that the manifest does not name. Empty: it is good."""
    try:
        manifest = manifest or read(gen)
    except BackupError as e:
        return [str(e)]
    found: list[str] = []
    listed = {e.path for e in manifest.files}
    for entry in manifest.files:
        path = gen / entry.path
        try:
            size, digest = sha256_of(path)
        except FileNotFoundError:
            found.append(f"{entry.path}: missing")
            continue
        except OSError as e:
            found.append(f"{entry.path}: cannot read ({e.strerror})")
            continue
        if size != entry.size:
            found.append(f"{entry.path}: {size} bytes, the manifest says {entry.size}")
        elif digest != entry.sha256:
            found.append(f"{entry.path}: SHA-256 differs from the manifest (damaged)")
    found += [f"{rel}: not in the manifest" for rel in walk(gen) if rel not in listed]
    return found
