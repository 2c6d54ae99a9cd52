"""``postroom backup`` through the real command, against a real ``postroom serve``: a
generation taken while mail arrives is whole and verified; the latest pointer only moves
to a verified generation; pruning, the shrink guard, a damaged generation, the rsync push
to a daemon, and the backup ``serve`` takes on its schedule."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import trustme

from postroom import site as site_mod
from postroom.ops import generations as gens
from postroom.ops import manifest as mf
from postroom.ops import mirror
from postroom.ops.backup import backup as take
from postroom.ops.manifest import BackupError
from postroom.serve.periodic import read_state
from tests.conftest import run
from tests.ops.conftest import RsyncDaemon, ask, queued, send
from tests.serve.test_reload import route_to
from tests.server import Server, configure_site

EX_DATAERR, EX_TEMPFAIL, EX_CONFIG = 65, 75, 78


def ok(*args: str, site: Path | None = None) -> str:
    r = run(*args, site=site)
    assert r.returncode == 0, r.stderr
    return r.stdout


def backup(site: Path, dest: Path, *args: str) -> str:
    return ok("backup", str(dest), *args, site=site)


def names(dest: Path) -> list[str]:
    return [g.name for g in gens.generations(dest)]


@pytest.fixture
def served(example_site: Path, ca: trustme.CA, closed_port: int) -> Server:
    configure_site(example_site, ca)
    route_to(example_site, closed_port)  # every outside delivery is deferred: mail stays
    server = Server(example_site, workers=2).start()
    yield server
    server.stop()


def test_a_backup_taken_while_mail_arrives_is_whole_and_verified(
        served: Server, tmp_path: Path) -> None:
    site, dest = served.site, tmp_path / "backup"
    for i in range(5):
        send(served, "neilb@inf.example.ac.uk", f"before {i}")
    stop = threading.Event()

    def keep_sending() -> None:
        i = 0
        while not stop.is_set():
            send(served, "jsmith@inf.example.ac.uk", f"during {i}")
            i += 1

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        time.sleep(0.3)
        out = backup(site, dest)
    finally:
        stop.set()
        sender.join()
    assert out.startswith(f"backup {dest}/") and "verified and promoted" in out
    [name] = names(dest)
    gen = dest / name
    assert (dest / "latest").resolve() == gen.resolve()
    m = mf.read(gen)
    assert m.store == "sqlite" and m.hostname == "mail.inf.example.ac.uk"
    assert len(m.queue) >= 5
    listed = {e.path for e in m.files}
    for qid in m.queue:  # every queued message whole: its envelope and its message
        assert f"files/queue/active/{qid}.env" in listed
        assert f"files/queue/msg/{qid}.msg" in listed
    for part in ("files/postroom.toml", "files/maps/aliases", "files/tls/key.pem",
                 "store.sqlite"):
        assert part in listed
    assert not any(p.startswith(("files/state/", "files/export/", "files/queue/tmp/",
                                 "files/queue/free/")) for p in listed)
    assert mf.problems(gen) == []
    # the store copy is a SQLite database of its own, with the example's list in it
    with sqlite3.connect(gen / "store.sqlite") as db:
        assert db.execute("SELECT count(*) FROM mailing_lists").fetchone()[0] >= 1
    assert (gen.stat().st_mode & 0o077) == 0  # keys and password hashes: the owner's only
    listing = ok("backup", "list", str(dest))
    assert name in listing and "latest" in listing and f"{len(m.queue)} queued" in listing
    assert ok("backup", "verify", str(dest)) == f"{name}: ok\n"
    # a second generation, after the mail stopped, has every message queued now
    second = backup(site, dest)
    assert len(names(dest)) == 2 and "verified and promoted" in second
    assert set(queued(site)) <= set(mf.read(dest / "latest").queue)


def test_pruning_keeps_n_and_never_the_latest(example_site: Path, tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    for _ in range(4):
        backup(example_site, dest, "--keep", "2")
    kept = names(dest)
    assert len(kept) == 2
    assert gens.latest_name(dest) == kept[-1]
    # the newest one held back by the shrink guard: the latest verified one stays
    (example_site / "mail" / "big").write_bytes(b"x" * 400_000)
    backup(example_site, dest, "--keep", "2")
    good = gens.latest_name(dest)
    (example_site / "mail" / "big").unlink()
    for _ in range(3):
        r = run("backup", str(dest), "--keep", "1", site=example_site)
        assert r.returncode == EX_TEMPFAIL, r.stderr
    assert gens.latest_name(dest) == good and good in names(dest)
    assert len(names(dest)) == 2  # the newest (held) and the latest


def test_a_much_smaller_backup_is_kept_but_not_promoted(example_site: Path,
                                                        tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    (example_site / "archives" / "old.mbox").write_bytes(b"From x\n" * 100_000)
    backup(example_site, dest)
    first = gens.latest_name(dest)
    (example_site / "archives" / "old.mbox").unlink()  # half a disk mounted, say
    r = run("backup", str(dest), site=example_site)
    assert r.returncode == EX_TEMPFAIL
    assert "kept but not promoted" in r.stderr and "--force" in r.stderr
    assert "% less" in r.stderr
    assert gens.latest_name(dest) == first
    held = [g for g in gens.generations(dest) if g.held]
    assert len(held) == 1 and held[0].verified and held[0].status.startswith("held: ")
    assert "held: " in ok("backup", "list", str(dest))
    out = backup(example_site, dest, "--force")
    assert gens.latest_name(dest) != first and "promoted" in out


def test_a_damaged_generation_fails_verify_and_is_never_published(
        example_site: Path, tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    backup(example_site, dest)
    gen = dest / "latest"
    aliases = gen / "files" / "maps" / "aliases"
    data = bytearray(aliases.read_bytes())
    data[10] ^= 0x20
    aliases.write_bytes(bytes(data))
    (gen / "files" / "stray").write_text("not from the site")
    r = run("backup", "verify", str(dest))
    assert r.returncode == EX_DATAERR
    assert "DAMAGED" in r.stdout
    assert "files/maps/aliases: SHA-256 differs from the manifest" in r.stdout
    assert "files/stray: not in the manifest" in r.stdout
    # restore refuses it, naming the file
    r = run("restore", str(dest), str(tmp_path / "new"))
    assert r.returncode == EX_DATAERR and "files/maps/aliases" in r.stderr
    assert not (tmp_path / "new" / "postroom.toml").exists()
    # a staged generation whose copy is damaged is never published
    staged = dest / ".partial-X"
    staged.mkdir()
    (staged / "a").write_bytes(b"written")
    manifest = mf.Manifest("X", time.time(), str(example_site), "h", "none",
                           [mf.Entry("a", 7, "0" * 64)])
    latest = gens.latest_name(dest)
    with pytest.raises(BackupError, match="not published"):
        gens.publish(dest, staged, manifest, max_shrink=50, force=True)
    assert gens.latest_name(dest) == latest and "X" not in names(dest)
    backup(example_site, dest)  # the next backup clears what was left
    assert not staged.exists()


def test_push_to_an_rsync_daemon(example_site: Path, tmp_path: Path,
                                 rsync_daemon: RsyncDaemon) -> None:
    dest = tmp_path / "backup"
    target = rsync_daemon.url("crunchie-mail")
    out = backup(example_site, dest, "--to", target)
    name = gens.latest_name(dest)
    assert name is not None and f"pushed to {target}/{name}" in out
    mirror = rsync_daemon.root / "crunchie-mail"
    assert (mirror / "latest").is_symlink() and (mirror / "latest").readlink() == Path(name)
    assert mf.problems(mirror / name) == []  # the mirror's copy checks out on its own
    # a second push leaves the first generation on the mirror (the last good one)
    (example_site / "maps" / "aliases").open("a").write("extra: neilb\n")
    backup(example_site, dest, "--to", target)
    second = gens.latest_name(dest)
    assert second != name and (mirror / name).is_dir()
    assert (mirror / "latest").readlink() == Path(str(second))
    # a target that is no rsync target is refused before anything is written
    r = run("backup", str(dest), "--to", "/just/a/path", site=example_site)
    assert r.returncode == EX_DATAERR and "rsync://HOST[:PORT]/MODULE/PATH" in r.stderr


def _remote(target: str) -> list[str]:
    """The mirror as an operator lists it: ``rsync --list-only TARGET/``."""
    r = subprocess.run(["rsync", "--list-only", "--links", f"{target}/"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return sorted(line.split(None, 4)[4] for line in r.stdout.splitlines()
                  if not line.endswith(" ."))


def test_push_prunes_the_mirror_and_never_zaps_the_last_good_one(
        example_site: Path, tmp_path: Path, rsync_daemon: RsyncDaemon) -> None:
    dest, site = tmp_path / "backup", site_mod.load(example_site)
    target = rsync_daemon.url("crunchie-mail")
    mirror = rsync_daemon.root / "crunchie-mail"
    mirror.mkdir(mode=0o700)
    (mirror / "notes").mkdir()  # the mirror's own things: never touched
    (mirror / "notes" / "README").write_text("the mirror's admins\n")
    pushed = []
    for _ in range(3):
        result = take(site, dest, keep=2, to=(target,))
        pushed.append(result.generation.name)
    first, second, third = pushed
    assert result.mirror_pruned == {target: [first]}
    assert _remote(target) == sorted([second, third, f"latest -> {third}", "notes"])
    # a push that fails half-way (the lossy module refuses the aliases map) is never
    # marked verified there, moves no latest and prunes nothing, even with --keep 1
    lossy = rsync_daemon.url("crunchie-mail", module="lossy")
    with pytest.raises(BackupError, match="failed while copying") as failed:
        take(site, dest, keep=1, to=(lossy,))
    assert "latest was not moved and nothing on it was removed" in str(failed.value)
    short = gens.latest_name(dest)  # published here; only its push failed
    assert short not in pushed and (mirror / short).is_dir()
    assert not (mirror / short / mf.VERIFIED).exists()
    assert _remote(target) == sorted([second, third, short, f"latest -> {third}", "notes"])
    # what the operator sees: the failed copy is named as such
    listing = ok("backup", "list", target)
    assert listing.splitlines() == [
        f"{second}  verified", f"{third}  latest",
        f"{short}  UNVERIFIED (a push that failed, or one still running)"]
    # the next good push prunes to --keep 1 among the verified copies, keeps the newest,
    # leaves the failed copy (it may be a push still running) and says so
    r = run("backup", str(dest), "--keep", "1", "--to", target, site=example_site)
    assert r.returncode == 0, r.stderr
    fourth = gens.latest_name(dest)
    assert f"pruned on {target}: {second}, {third}" in r.stdout
    assert f"{short} without a verified manifest" in r.stderr
    assert _remote(target) == sorted([short, str(fourth), f"latest -> {fourth}", "notes"])
    assert mf.problems(mirror / str(fourth)) == []
    assert (mirror / "notes" / "README").exists()
    assert names(dest) == [fourth]  # DEST pruned to --keep 1 as well


def test_a_mirror_that_refuses_deletes_keeps_everything(
        example_site: Path, tmp_path: Path, rsync_daemon: RsyncDaemon) -> None:
    dest, site = tmp_path / "backup", site_mod.load(example_site)
    target = rsync_daemon.url("m", module="nodelete")
    first = take(site, dest, keep=1, to=(target,))
    second = take(site, dest, keep=1, to=(target,))
    assert second.pushed == [f"{target}/{second.generation.name}"]
    assert second.mirror_pruned == {}
    assert any(f"{target} not pruned" in w for w in second.warnings)
    names_there = [g.name for g in mirror.generations(target) if g.good]
    assert names_there == [first.generation.name, second.generation.name]
    [latest] = [g.name for g in mirror.generations(target) if g.latest]
    assert latest == second.generation.name


def test_a_mirror_that_cannot_be_reached_is_an_error_and_dest_is_kept(
        example_site: Path, tmp_path: Path, closed_port: int) -> None:
    dest = tmp_path / "backup"
    r = run("backup", str(dest), "--to", f"rsync://127.0.0.1:{closed_port}/mirror/x",
            site=example_site)
    assert r.returncode == EX_DATAERR and "failed while copying" in r.stderr
    assert gens.latest_name(dest) in names(dest)  # the generation itself is good


def test_mirror_listing_is_read_as_rsync_prints_it() -> None:
    listing = (
        "drwx------          4,096 2026/12/01 15:20:58 .\n"
        "lrwxrwxrwx             16 2026/12/01 15:20:58 latest -> 20261201T000000Z\n"
        "drwx------          4,096 2026/12/01 15:20:58 20261201T000000Z\n"
        "-rw-------          3,003 2026/12/01 15:20:58 20261201T000000Z/manifest.json\n"
        "-rw-------             21 2026/12/01 15:20:58 20261201T000000Z/verified\n"
        "drwx------          4,096 2026/12/01 15:20:58 20261202T000000Z\n"
        "-rw-------          3,003 2026/12/01 15:20:58 20261202T000000Z/manifest.json\n"
        "drwxr-xr-x          4,096 2026/12/01 15:20:58 my notes\n")
    found = {g.name: g for g in mirror.parse_listing(listing)}
    assert list(found) == ["20261201T000000Z", "20261202T000000Z"]  # no "my notes"
    assert found["20261201T000000Z"].good and found["20261201T000000Z"].latest
    assert not found["20261202T000000Z"].good
    assert found["20261202T000000Z"].status.startswith("UNVERIFIED")


def test_progress_bar_can_be_forced(example_site: Path, tmp_path: Path) -> None:
    r = run("backup", str(tmp_path / "backup"), "--progress", site=example_site)
    assert r.returncode == 0, r.stderr
    assert "verified and promoted" in r.stdout


def test_refuses_a_destination_inside_the_site_home(example_site: Path) -> None:
    r = run("backup", str(example_site / "backup"), site=example_site)
    assert r.returncode == EX_DATAERR and "inside the site home" in r.stderr


def test_serve_takes_the_scheduled_backup(example_site: Path, ca: trustme.CA,
                                          tmp_path: Path) -> None:
    dest = tmp_path / "scheduled"
    configure_site(example_site, ca, extra=f'\n[backup]\ndest = "{dest}"\nevery = "1d"\n'
                                           "keep = 3\n")
    server = Server(example_site, workers=1).start()
    try:
        reply = ask(example_site, "run", "backup")
        assert reply["ok"] is True, reply
        assert str(reply["said"]).startswith(f"backup {dest}/")
    finally:
        server.stop()
    state = read_state(example_site / "state")
    assert state["backup"]["ok"] is True and state["backup"]["last_ok"]
    assert len(names(dest)) == 1
    assert "backup: done: backup " in server.log()


def test_a_bad_backup_key_names_the_field(example_site: Path) -> None:
    with open(example_site / "postroom.toml", "a") as f:
        f.write('\n[backup]\ndest = "/srv/backup"\nevery = "5s"\n')
    r = run("backup", "/tmp/x", site=example_site)
    assert r.returncode == EX_CONFIG
    assert "backup.every" in r.stderr and "too often" in r.stderr


def test_manifest_names_its_format(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(BackupError, match=r"not a readable manifest|format 99"):
        mf.read(tmp_path)
