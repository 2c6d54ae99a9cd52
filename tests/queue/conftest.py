from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.queue.spool import Spool


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "queue"


@pytest.fixture
def spool(root: Path) -> Iterator[Spool]:
    s = Spool(root)
    yield s
    s.close()

