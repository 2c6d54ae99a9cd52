"""Pushing a verified generation to a mirror with rsync, and pruning the mirror.

A target is ``rsync://HOST[:PORT]/MODULE/PATH`` (an rsync daemon) or ``[USER@]HOST:PATH``
(rsync over ssh). The generation goes to ``PATH/NAME/`` beside what the mirror already
holds, without its ``verified`` marker; it is compared file by file with the local copy
(``rsync --checksum --dry-run``: nothing may differ), and only then is ``verified`` sent
and the mirror's ``latest`` link moved to it. So on the mirror, as in DEST, ``verified``
means "this copy was read back whole"; a push that fails leaves a copy without it, and
``latest`` where it was.

After a push, ``prune`` removes the old generations of the mirror as ``generations.prune``
does locally: the newest ``keep`` verified ones stay, and so do the one ``latest`` names,
the newest verified one and the one just pushed. A directory without ``verified`` (a
push that failed, or another machine's push still running: nothing locks a mirror) or
without a manifest is never removed, nor is anything not named like a generation. What
the mirror holds is read with ``rsync --list-only``; a generation is removed by syncing
an empty directory onto the target with ``--delete`` and filters naming only it, so
nothing else on the mirror can be touched. A push that fails prunes nothing.

A daemon must keep symbolic links as they are (``munge symlinks = no``, or ``use chroot
= yes``), and let the pushing user delete (``read only = false``, no ``refuse options =
delete``). Both ends need rsync 3.2.3 or newer (``--mkpath`` makes the mirror's
directories).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from postroom.ops.generations import LATEST
from postroom.ops.manifest import HELD, MANIFEST, VERIFIED, BackupError

_DAEMON = re.compile(r"^rsync://[^/\s]+/[^/\s]+(/.*)?$")
_SSH = re.compile(r"^(?:[^@/:\s]+@)?[^/:\s]+:.*$")
_NAME = re.compile(r"^\d{8}T\d{6}Z(?:-\d+)?$")  # generations.new_name
TIMEOUT = 3600


@dataclass(slots=True)
class MirrorGeneration:
    """A generation as the mirror holds it (what ``rsync --list-only`` shows of it)."""

    name: str
    manifest: bool
    verified: bool
    held: bool
    latest: bool

    @property
    def good(self) -> bool:
        """A whole, published copy: checked after its push, never held back."""
        return self.manifest and self.verified and not self.held

    @property
    def status(self) -> str:
        if not self.manifest:
            return "DAMAGED (no manifest)" if self.verified else "UNVERIFIED (no manifest)"
        if not self.verified:
            return "UNVERIFIED (a push that failed, or one still running)"
        if self.held:
            return "held"
        return "latest" if self.latest else "verified"


def is_target(text: str) -> bool:
    """Whether ``text`` names a mirror (rsync's own rule: a colon before any slash)."""
    return bool(_DAEMON.match(text) or (_SSH.match(text) and "://" not in text))


def check_target(target: str) -> str:
    """The target without a trailing slash; BackupError naming the forms it may take."""
    if is_target(target):
        return target.rstrip("/")
    raise BackupError(f"mirror {target!r} is not an rsync target (fix: write "
                      "rsync://HOST[:PORT]/MODULE/PATH or HOST:PATH)")


def _rsync(*args: str) -> subprocess.CompletedProcess[str]:
    program = shutil.which("rsync")
    if program is None:
        raise BackupError("rsync is not installed (fix: apt-get install rsync)")
    return subprocess.run([program, *args], capture_output=True, text=True, timeout=TIMEOUT)


def _run(what: str, target: str, *args: str) -> str:
    done = _rsync(*args)
    if done.returncode != 0:
        raise BackupError(f"rsync to {target} failed while {what} (exit {done.returncode}): "
                          f"{done.stderr.strip()[-500:]}")
    return done.stdout


def push(generation: Path, target: str) -> str:
    """Send ``generation`` to ``target``, check it there, mark it verified there, then move
    its ``latest``; returns the mirror's name of the generation."""
    target = check_target(target)
    name = generation.name
    remote = f"{target}/{name}/"
    if not (generation / VERIFIED).is_file():
        raise BackupError(f"{generation} was never verified; only a verified generation "
                          "is pushed (fix: 'postroom backup verify' it, or take a new one)")
    try:
        # the copy without its marker: a copy cut short must not look whole on the mirror
        _run("copying", target, "-a", "--mkpath", f"--exclude=/{VERIFIED}",
             f"{generation}/", remote)
        differ = _run("checking the copy", target, "-a", "--checksum", "--dry-run",
                      "--itemize-changes", f"--exclude=/{VERIFIED}", f"{generation}/",
                      remote)
        changed = [line for line in differ.splitlines() if line.strip()]
        if changed:
            raise BackupError(f"the copy on {target} differs from {generation} after rsync "
                              f"({len(changed)} files, e.g. {changed[0]})")
        _run("marking the copy verified", target, "-a", f"{generation}/{VERIFIED}", remote)
    except BackupError as e:
        raise BackupError(f"{e}; the mirror's {LATEST} was not moved and nothing on it "
                          "was removed") from None
    with tempfile.TemporaryDirectory(prefix="postroom-mirror-") as tmp:
        link = Path(tmp) / LATEST
        link.symlink_to(name)
        # the directory's contents (the one link) into the target directory: naming the
        # link itself would copy it into the generation the old link points to
        _run(f"moving {LATEST}", target, "-l", "--dirs", f"{tmp}/", f"{target}/")
    return f"{target}/{name}"


def generations(target: str) -> list[MirrorGeneration]:
    """What the mirror holds, oldest first: each directory of ``target`` with the markers
    it has (``rsync --list-only``, the manifests' names only: nothing is copied)."""
    target = check_target(target)
    listing = _run("listing the mirror", target, "--list-only", "--recursive", "--links",
                   f"--include=/{LATEST}", "--include=/*/", f"--include=/*/{MANIFEST}",
                   f"--include=/*/{VERIFIED}", f"--include=/*/{HELD}", "--exclude=*",
                   f"{target}/")
    return parse_listing(listing)


def parse_listing(listing: str) -> list[MirrorGeneration]:
    """``rsync --list-only`` lines (``MODE SIZE DATE TIME NAME``) -> generations; a
    directory not named like one (the mirror's own things) is not one."""
    latest = None
    dirs: list[str] = []
    markers: dict[str, set[str]] = {}
    for line in listing.splitlines():
        fields = line.split(None, 4)
        if len(fields) < 5:
            continue
        mode, name = fields[0], fields[4]
        if mode.startswith("l") and name.startswith(f"{LATEST} -> "):
            latest = name.removeprefix(f"{LATEST} -> ").rstrip("/")
        elif mode.startswith("d") and _NAME.match(name):
            dirs.append(name)
        elif mode.startswith("-") and name.count("/") == 1:
            gen, _, marker = name.partition("/")
            markers.setdefault(gen, set()).add(marker)
    return [MirrorGeneration(d, MANIFEST in markers.get(d, ()), VERIFIED in markers.get(d, ()),
                             HELD in markers.get(d, ()), d == latest) for d in sorted(dirs)]


@dataclass(slots=True)
class Pruned:
    removed: list[str]
    left: list[str]     # not good (unverified, no manifest, held), never removed here


def prune(target: str, keep: int, pushed: str) -> Pruned:
    """Remove the mirror's old generations: all good ones but the newest ``keep``, never
    the one its ``latest`` names, the newest good one nor ``pushed``; anything that is
    not a good generation is left (and named)."""
    target = check_target(target)
    found = generations(target)
    good = [g.name for g in found if g.good]
    protected = {pushed, *good[-1:], *(g.name for g in found if g.latest)}
    kept = set(good[-keep:]) | protected
    gone = [name for name in good if name not in kept]
    left = [g.name for g in found if not g.good]
    if gone:
        with tempfile.TemporaryDirectory(prefix="postroom-prune-") as empty:
            # every name not included is excluded, so protected from --delete
            _run(f"pruning {', '.join(gone)}", target, "--recursive", "--delete",
                 *(f"--include=/{name}/***" for name in gone), "--exclude=*",
                 f"{empty}/", f"{target}/")
    return Pruned(gone, left)
