"""``postroom backup DEST``: a new generation of the site home in DEST, written beside
the old ones, verified, published, pruned, and pushed to mirrors, which are pruned the
same way after each push that succeeded.

The steps, each in its own module: the consistent copy (``snapshot``), the generations
and the rules that keep the last good one (``generations``), the manifest
(``manifest``), rsync (``mirror``). ``serve`` runs this on a schedule (``[backup]``,
``postroom.serve.tasks``); its result is recorded in ``state/periodic.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from postroom.ops import generations as gens
from postroom.ops import mirror
from postroom.ops.manifest import BackupError
from postroom.ops.snapshot import Progress, snapshot
from postroom.site import Site


@dataclass(slots=True)
class BackupResult:
    generation: gens.Generation
    seconds: float
    pruned: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    mirror_pruned: dict[str, list[str]] = field(default_factory=dict)  # target: names
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        m = self.generation.manifest
        assert m is not None
        said = (f"backup {self.generation.path}: {len(m.files)} files, {m.total_bytes} "
                f"bytes, {len(m.queue)} queued messages, store {m.store}, verified and "
                f"promoted in {self.seconds:.1f} s")
        if self.pruned:
            said += f"; pruned {', '.join(self.pruned)}"
        if self.pushed:
            said += f"; pushed to {', '.join(self.pushed)}"
        for target, names in self.mirror_pruned.items():
            if names:
                said += f"; pruned on {target}: {', '.join(names)}"
        return said


def backup(site: Site, dest: Path, *, keep: int | None = None,
           max_shrink: float | None = None, force: bool = False, to: tuple[str, ...] = (),
           progress: Progress | None = None) -> BackupResult:
    """Take, verify and publish a generation; prune; push it to each mirror in ``to`` and
    prune that mirror to ``keep`` too. NotPromoted when it is much smaller than the latest
    (it is kept, held, and pushed nowhere); BackupError for anything that stops it (the
    earlier generations are never touched, here nor on a mirror). A mirror that cannot be
    pruned after a good push is a warning: its old generations stay."""
    cfg = site.profile.backup
    keep = cfg.keep if keep is None else keep
    max_shrink = cfg.max_shrink if max_shrink is None else max_shrink
    for target in to:
        mirror.check_target(target)
    dest = dest.resolve()
    if dest == site.home.resolve() or site.home.resolve() in dest.parents:
        raise BackupError(f"{dest} is inside the site home {site.home}: a backup there is "
                          "lost with the site (fix: give a directory on another disk)")
    start = time.monotonic()
    with gens.locked(dest):
        gens.clear_partials(dest)
        name = gens.new_name(dest)
        staging = dest / (gens.PARTIAL + name)
        try:
            snap = snapshot(site, staging, name, progress=progress)
        except OSError as e:
            raise BackupError(f"cannot write the backup in {staging}: "
                              f"{e.strerror or e} ({e.filename or dest})") from None
        try:
            generation = gens.publish(dest, staging, snap.manifest, max_shrink=max_shrink,
                                      force=force)
        except gens.NotPromoted:
            gens.prune(dest, keep)  # the held one is the newest; latest is protected
            raise
        pruned = gens.prune(dest, keep)
    result = BackupResult(generation, 0.0, pruned, warnings=snap.warnings)
    for target in to:
        result.pushed.append(mirror.push(generation.path, target))
        try:
            done = mirror.prune(target, keep, generation.name)
        except BackupError as e:
            result.warnings.append(f"{target} not pruned (its generations are all "
                                   f"kept): {e}")
            continue
        result.mirror_pruned[target] = done.removed
        if done.left:
            result.warnings.append(
                f"{target} holds {', '.join(done.left)} without a verified manifest (a "
                "push that failed, or one still running); left as they are")
    result.seconds = time.monotonic() - start
    return result


def verify(dest: Path, names: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """{generation: problems} for the named generations of ``dest`` (all by default)."""
    found = {g.name: g for g in gens.generations(dest)}
    wanted = names or tuple(found)
    out: dict[str, list[str]] = {}
    from postroom.ops.manifest import problems

    for name in wanted:
        if name not in found:
            raise BackupError(f"{dest}: no generation {name!r} (fix: 'postroom backup list "
                              f"{dest}' shows them)")
        g = found[name]
        out[name] = problems(g.path) + ([] if g.verified else
                                        ["never verified after it was written"])
    return out
