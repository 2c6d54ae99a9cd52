"""Pushing a verified generation to a mirror with rsync.

A target is ``rsync://HOST[:PORT]/MODULE/PATH`` (an rsync daemon) or ``[USER@]HOST:PATH``
(rsync over ssh). The generation goes to ``PATH/NAME/`` beside what the mirror already
holds (nothing there is deleted or overwritten: the last good mirror is never zapped),
is compared file by file with the local copy (``rsync --checksum --dry-run``: nothing
may differ), and only then is the mirror's ``latest`` link moved to it. A daemon must
keep symbolic links as they are (``munge symlinks = no``, or ``use chroot = yes``).
Both ends need rsync 3.2.3 or newer (``--mkpath`` makes the mirror's directories).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from postroom.ops.generations import LATEST
from postroom.ops.manifest import BackupError

_DAEMON = re.compile(r"^rsync://[^/\s]+/[^/\s]+(/.*)?$")
_SSH = re.compile(r"^(?:[^@/:\s]+@)?[^/:\s]+:.*$")
TIMEOUT = 3600


def check_target(target: str) -> str:
    """The target without a trailing slash; BackupError naming the forms it may take."""
    if _DAEMON.match(target) or (_SSH.match(target) and "://" not in target):
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
    """Send ``generation`` to ``target``, check it there, then move its ``latest``; returns
    the mirror's name of the generation."""
    target = check_target(target)
    name = generation.name
    remote = f"{target}/{name}/"
    _run("copying", target, "-a", "--mkpath", f"{generation}/", remote)
    differ = _run("checking the copy", target, "-a", "--checksum", "--dry-run",
                  "--itemize-changes", f"{generation}/", remote)
    changed = [line for line in differ.splitlines() if line.strip()]
    if changed:
        raise BackupError(f"the copy on {target} differs from {generation} after rsync "
                          f"({len(changed)} files, e.g. {changed[0]}); the mirror's "
                          f"{LATEST} was not moved")
    with tempfile.TemporaryDirectory(prefix="postroom-mirror-") as tmp:
        link = Path(tmp) / LATEST
        link.symlink_to(name)
        # the directory's contents (the one link) into the target directory: naming the
        # link itself would copy it into the generation the old link points to
        _run(f"moving {LATEST}", target, "-l", "--dirs", f"{tmp}/", f"{target}/")
    return f"{target}/{name}"
