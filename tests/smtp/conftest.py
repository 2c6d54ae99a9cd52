from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import run
from tests.server import Server, configure_site

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def site(example_site: Path, ca: trustme.CA) -> Path:
    configure_site(example_site, ca)
    r = run("users", "add", "alice", "--address", "alice@inf.example.ac.uk",
            "--address", "a.smith@inf.example.ac.uk", "--password-stdin",
            site=example_site, input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    return example_site


@pytest.fixture
def server(site: Path) -> Iterator[Server]:
    s = Server(site).start()
    yield s
    s.stop()
