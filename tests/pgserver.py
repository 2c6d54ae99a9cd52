"""A throw-away PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` in a temp directory.

The server listens on 127.0.0.1 on a free port (and on a unix socket inside its directory
only), trusts every local connection and runs without fsync. Tests run as root in CI, and
``initdb`` refuses root, so as root the server runs as the ``postgres`` user (else
``nobody``) through ``runuser``. Missing binaries are an error, never a skip.

Use from any test package (``tests/store/conftest.py`` does this)::

    from tests.pgserver import PostgresServer, PostgresUnavailable, start_postgres

    @pytest.fixture(scope="session")
    def pg_server() -> Iterator[PostgresServer]:
        try:
            with start_postgres() as server:
                yield server
        except PostgresUnavailable as e:
            pytest.fail(str(e), pytrace=False)

    def test_x(pg_server):
        url = pg_server.create_schema()     # fresh and empty; a SQLAlchemy URL (fast)
        url = pg_server.create_database()   # a real new database (0.2 s)
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "postroom"
_SEARCH = ("/usr/local/bin", "/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin",
           "/opt/homebrew/bin", "/usr/pgsql-*/bin")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries, or the server would not start; the message says which."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres (``$PG_BINDIR`` wins)."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    for pattern in _SEARCH:
        candidates.extend(sorted(glob.glob(pattern), reverse=True))
    for directory in candidates:
        d = Path(directory)
        if all((d / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return d
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, in "
        "/usr/lib/postgresql/*/bin or in $PG_BINDIR; install them (Debian: "
        "apt-get install postgresql, or 'make deps') to run the postgres tests")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unprivileged_user() -> str | None:
    """None when we are not root; else a user initdb will accept."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable("running as root and there is no 'postgres' or 'nobody' user "
                              "to run initdb as")


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    user: str | None
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3) for ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(a) for a in args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=self.root)

    def start(self) -> None:
        self.socket_dir.mkdir()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        done = self._run(str(self.bindir / "initdb"), "-D", str(self.datadir),
                         "-U", SUPERUSER, "--auth=trust", "--no-sync", "-E", "UTF8",
                         "--locale=C")
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.socket_dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=50")
        done = self._run(str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60",
                         "-D", str(self.datadir), "-l", str(self.root / "server.log"),
                         "-o", options)
        if done.returncode != 0:
            log = self.root / "server.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n"
                                      f"{text}")
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                                     dbname="postgres", connect_timeout=2):
                    return
            except psycopg.OperationalError as e:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"server on port {self.port} not ready: {e}") from e
                time.sleep(0.05)

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "stop", "-m", "immediate", "-w",
                      "-D", str(self.datadir))

    def create_schema(self, name: str | None = None) -> str:
        """Create a new empty schema in the ``postgres`` database; return a SQLAlchemy URL
        whose connections have it as their only ``search_path``: to the code under test it
        is an empty database, and it takes milliseconds where CREATE DATABASE takes 0.2 s."""
        import psycopg

        name = name or f"test_{next(self._counter)}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')  # type: ignore[arg-type]
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def create_database(self, name: str | None = None) -> str:
        """Create a new empty database; return its SQLAlchemy URL."""
        import psycopg

        name = name or f"test_{next(self._counter)}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)


@contextmanager
def start_postgres() -> Iterator[PostgresServer]:
    """Start a private server; stop it (``pg_ctl stop -m immediate``) and delete it after."""
    bindir = find_bindir()
    user = _unprivileged_user()
    root = Path(tempfile.mkdtemp(prefix="postroom-pg-"))
    server = PostgresServer(bindir, root, free_port(), user)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
