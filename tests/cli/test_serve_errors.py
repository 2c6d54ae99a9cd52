"""What `postroom serve` says when it cannot start: one line naming what is in the way and
the fix, a sysexits code, no traceback, and nothing of a running server touched."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import POSTROOM
from tests.server import Server, configure_site

EX_UNAVAILABLE, EX_CONFIG = 69, 78


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def site(example_site: Path, ca: trustme.CA) -> Path:
    configure_site(example_site, ca)
    return example_site


def serve(site: Path, *, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, POSTROOM, "serve", "--site", str(site), "--workers", "1"],
                          capture_output=True, text=True, timeout=60)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line serve printed on stderr (and nothing else anywhere)."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_port_in_use(site: Path, busy_port: int) -> None:
    profile = site / "postroom.toml"
    mx = 'name = "mx"\nrole = "mx"\naddress = "127.0.0.1"\nport = 0\n'
    text = profile.read_text()
    assert mx in text
    profile.write_text(text.replace(mx, mx.replace("port = 0", f"port = {busy_port}")))
    done = serve(site)
    assert done.returncode == EX_UNAVAILABLE
    assert one_line(done) == (
        f"postroom: listener mx: cannot listen on 127.0.0.1:{busy_port}: address already "
        f"in use (another mail server? change [[listeners]] port in {profile})")
    assert done.stdout == ""
    assert not (site / "state/serve.pid").exists()
    assert not (site / "state/listeners.json").exists()
    log = site / "log/mail.log"
    assert "starting" not in (log.read_text() if log.exists() else "")


def test_second_serve_on_the_same_site(site: Path) -> None:
    first = Server(site).start()
    try:
        assert first.proc is not None
        pid_text = (site / "state/serve.pid").read_text()
        listeners = (site / "state/listeners.json").read_text()
        done = serve(site)
        assert done.returncode == EX_UNAVAILABLE
        assert one_line(done) == (
            f"postroom: another postroom serve already runs for this site ({site}, pid "
            f"{first.proc.pid}) (fix: stop it first with 'kill -TERM {first.proc.pid}', or "
            "serve another site home with --site)")
        assert done.stdout == ""  # it never bound a listener
        # the running server's files are as it wrote them, and it still takes mail
        assert (site / "state/serve.pid").read_text() == pid_text
        assert (site / "state/listeners.json").read_text() == listeners
        assert first.proc.poll() is None
        with socket.create_connection(("127.0.0.1", first.ports["submission"]),
                                      timeout=10) as c:
            assert c.recv(1024).startswith(b"220 ")
    finally:
        assert first.stop() == 0
    assert first.log().count(": starting: ") == 1


def test_site_home_that_is_a_file(tmp_path: Path) -> None:
    home = tmp_path / "site"
    home.write_text("not a directory\n")
    done = serve(home)
    assert done.returncode == EX_CONFIG
    assert one_line(done) == (
        f"postroom: site home {home} is not a directory (fix: --site or POSTROOM_SITE must "
        "name the directory 'postroom init DIR' made)")


def test_profile_that_is_a_directory(site: Path) -> None:
    profile = site / "postroom.toml"
    profile.unlink()
    profile.mkdir()
    done = serve(site)
    assert done.returncode == EX_CONFIG
    assert one_line(done) == f"postroom: {profile}: cannot read it: Is a directory"


@pytest.fixture(scope="module")
def unprivileged(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """A prefix under which file permissions hold. The tests run as root, whom chmod does
    not stop, so root runs serve without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
    (setpriv); checked on a file nobody may read before it is trusted."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root ignores file permissions and setpriv (util-linux) is missing")
    prefix = (setpriv, "--bounding-set=-dac_override,-dac_read_search")
    secret = tmp_path_factory.mktemp("probe") / "secret"
    secret.write_text("x")
    secret.chmod(0)
    probe = subprocess.run([*prefix, "cat", str(secret)], capture_output=True, text=True)
    if probe.returncode == 0 or "Operation not permitted" in probe.stderr:
        pytest.skip(f"cannot drop root's file-permission override here: {probe.stderr}")
    return prefix


def test_unreadable_profile(site: Path, unprivileged: tuple[str, ...]) -> None:
    profile = site / "postroom.toml"
    profile.chmod(0)
    try:
        done = serve(site, prefix=unprivileged)
    finally:
        profile.chmod(0o644)
    assert done.returncode == EX_CONFIG
    line = one_line(done)
    assert line.startswith(f"postroom: cannot read {profile}: permission denied (fix: ")
    assert f"chmod u+rw {profile}" in line or "run 'postroom serve' as" in line


def test_unreadable_site_home(site: Path, unprivileged: tuple[str, ...]) -> None:
    site.chmod(0)
    try:
        done = serve(site, prefix=unprivileged)
    finally:
        site.chmod(0o755)
    assert done.returncode == EX_CONFIG
    line = one_line(done)
    assert line.startswith(f"postroom: cannot read {site}: permission denied (fix: ")
    assert f"chmod u+rwx {site}" in line or "run 'postroom serve' as" in line
    assert not (site / "state/serve.pid").exists()


def test_unwritable_state_directory(site: Path, unprivileged: tuple[str, ...]) -> None:
    state = site / "state"
    state.mkdir(exist_ok=True)
    state.chmod(0o500)
    try:
        done = serve(site, prefix=unprivileged)
    finally:
        state.chmod(0o755)
    assert done.returncode == 73  # EX_CANTCREAT
    assert one_line(done).startswith(f"postroom: cannot write {state}/serve.pid: permission "
                                     f"denied (fix: the site home {site} and everything in "
                                     "it must be writable by ")
    assert done.stdout == ""  # no listener was announced
    assert not (state / "listeners.json").exists()
