"""``postroom restore DEST[/GENERATION] SITE``: a site home rebuilt from a backup
generation, left quiescent, with the checklist of what to do before it takes mail.

The generation is checked against its manifest before anything is written (a damaged one
is refused, naming the file: take an older one). SITE must be empty, or ``force``. The
store comes back from its snapshot (the SQLite copy, or ``pg_restore`` into the
database the restored profile names), then the migrations run. The site is quiesced
(``state/quiescent``: 421 at greeting, nothing delivered) and ``state/restored.json``
records what came back, among it the queue IDs of the snapshot: ``postroom queue
import`` of the dead machine's queue uses them to take each message once
(``postroom.ops.salvage``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from postroom.errors import EX_CANTCREAT, PostroomError
from postroom.ops import generations as gens
from postroom.ops import manifest as mf
from postroom.ops.manifest import BackupError, Manifest
from postroom.ops.snapshot import STORE_COPY, pg_url
from postroom.safeio import atomic_replace
from postroom.site import Site, SiteHome
from postroom.site.home import LAYOUT, STATE
from postroom.store import db as store_db

RESTORED = "restored.json"  # in state/


class NotEmpty(BackupError):
    exit_code = EX_CANTCREAT


@dataclass(slots=True)
class Restored:
    home: Path
    generation: Path
    manifest: Manifest
    schema: tuple[str | None, str | None] = (None, None)
    checklist: list[str] = field(default_factory=list)
    seconds: float = 0.0


def read_restored(state_dir: Path) -> dict[str, object]:
    """What ``restore`` recorded in ``state/restored.json`` ({} when it was not restored)."""
    try:
        data = json.loads((state_dir / RESTORED).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _copy_tree(gen: Path, manifest: Manifest, target: Path) -> None:
    files = gen / mf.FILES
    prefix = mf.FILES + "/"
    for entry in manifest.files:
        if not entry.path.startswith(prefix):
            continue
        rel = entry.path[len(prefix):]
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(files / rel, dst)


def _store(gen: Path, manifest: Manifest, site: Site) -> None:
    url = store_db.store_url(site)
    if manifest.store == "sqlite":
        path = store_db.sqlite_path(url)
        if path is None:
            raise BackupError(f"the generation holds a SQLite store, but the restored "
                              f"profile names {store_db.describe(site)} (fix: empty "
                              f"database.url in {site.profile_path}, then restore again)")
        for suffix in ("-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        shutil.copy2(gen / STORE_COPY, path)
    elif manifest.store == "postgresql":
        program = shutil.which("pg_restore")
        if program is None:
            raise BackupError("pg_restore is not installed, and the store is PostgreSQL "
                              "(fix: apt-get install postgresql-client)")
        done = subprocess.run([program, "--clean", "--if-exists", "--no-owner",
                               "--no-privileges", "--exit-on-error", f"--dbname={pg_url(site)}",
                               str(gen / mf.PGDUMP)], capture_output=True, text=True,
                              timeout=3600)
        if done.returncode != 0:
            raise BackupError(f"pg_restore into {store_db.describe(site)} failed: "
                              f"{done.stderr.strip()[-800:]} (fix: database.url must name "
                              "a reachable database this user may write)")


def _old_paths(target: Path, old_home: str) -> list[str]:
    """Files in the restored maps and profile that still name the old site home."""
    if not old_home or Path(old_home) == target:
        return []
    needle = old_home.encode()
    out = []
    for path in [target / "postroom.toml", *sorted((target / "maps").rglob("*"))]:
        try:
            if path.is_file() and needle in path.read_bytes():
                out.append(str(path))
        except OSError:
            continue
    return out


def checklist(site: Site, gen: Path, manifest: Manifest, old: list[str]) -> list[str]:
    p = site.profile
    names = list(dict.fromkeys(p.check.names or [p.site.hostname, *p.site.host_names]))
    relays = ", ".join(p.networks.inbound) or "none in [networks] inbound"
    home = site.home
    taken = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(manifest.created))
    steps = []
    if old:
        steps.append(f"{len(old)} file(s) still name the old site home {manifest.site}: "
                     f"{', '.join(old)}; change them to {home} (then 'postroom verify')")
    steps += [
        f"postroom check --site {home}   (fix every FAIL before going on)",
        f"if the dead machine's disk can be read: postroom queue import OLDDISK/queue "
        f"--site {home}   (mail queued after {taken}; each message is taken once)",
        f"DNS: if this machine's address is not the old one, point {', '.join(names)} "
        "(A/AAAA, and the MX of each domain that names them) here",
        f"upstream relays ({relays}): tell their postmasters the new address, so they "
        f"fetch the address export from here ({home}/export/valid-addresses.txt); they "
        "return mail after 5 days of trying",
        f"submission certificate: {site.path(p.tls.cert)} must be valid for "
        f"{p.check.submission_name or p.site.hostname} (postroom check says when not)",
        "start the server (systemctl start postroom, or postroom serve), watch "
        f"{site.log_path}",
        f"postroom resume --site {home}; send test mail, watch the log; "
        "'postroom quiesce' again at the first surprise",
        f"mirrors: the generations in {gen.parent} are untouched; keep one copy aside "
        "until the new machine has written a good backup of its own",
    ]
    return steps


def set_database_url(profile: Path, url: str) -> None:
    """Point the restored profile's ``[database] url`` at ``url`` (a new database server)."""
    import re

    text = profile.read_text()
    line = f"url = {json.dumps(url)}"
    section = re.search(r"^\[database\][ \t]*\n((?:(?!\[).*\n?)*)", text, flags=re.M)
    if section is None:
        text = text.rstrip("\n") + f"\n\n[database]\n{line}\n"
    else:
        body = section.group(1)
        if re.search(r"^url\s*=.*$", body, flags=re.M):
            body = re.sub(r"^url\s*=.*$", lambda _: line, body, count=1, flags=re.M)
        else:
            body = line + "\n" + body
        text = text[:section.start(1)] + body + text[section.end(1):]
    atomic_replace(profile, text.encode(), mode=0o644)


def restore(source: Path, target: Path, *, force: bool = False,
            database_url: str | None = None) -> Restored:
    start = time.monotonic()
    gen = gens.pick(source.resolve())
    manifest = mf.read(gen)
    bad = mf.problems(gen, manifest)
    if bad:
        raise BackupError(f"{gen} does not match its manifest, nothing was restored: "
                          f"{'; '.join(bad[:5])} (fix: restore an older generation; "
                          "'postroom backup verify' checks them all)")
    target = target.resolve()
    if target.exists() and not target.is_dir():
        raise NotEmpty(f"{target} is not a directory (fix: name a new or empty directory)")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise NotEmpty(f"{target} is not empty; restoring would overwrite what is there "
                       "(fix: name a new or empty directory, or --force to overwrite)")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    _copy_tree(gen, manifest, target)
    if database_url:
        set_database_url(target / "postroom.toml", database_url)
    for part in LAYOUT:
        if part.directory:
            (target / part.name).mkdir(mode=0o700, exist_ok=True)
    home = SiteHome(target)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(manifest.created))
    home.quiesce(f"restored from {gen.name} (taken {when}); run postroom check, then "
                 "postroom resume")
    record = {"generation": gen.name, "source": str(gen), "taken": manifest.created,
              "restored": time.time(), "old_site": manifest.site, "queue": manifest.queue}
    atomic_replace(target / STATE.name / RESTORED, json.dumps(record, indent=1).encode())
    from postroom import site as site_mod

    try:
        site = site_mod.load(target)
    except PostroomError as e:
        raise BackupError(f"restored {gen.name} into {target} (quiescent), but its profile "
                          f"cannot be used here: {e} (fix it, then 'postroom db upgrade' "
                          "and 'postroom check')") from None
    _store(gen, manifest, site)
    result = Restored(target, gen, manifest)
    result.schema = store_db.upgrade(site) if manifest.store != "none" else (None, None)
    result.checklist = checklist(site, gen, manifest, _old_paths(target, manifest.site))
    os.sync()
    result.seconds = time.monotonic() - start
    return result
