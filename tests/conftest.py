"""Shared fixtures: example sites made by the real `postroom init`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POSTROOM = str(BIN / "postroom")
SENDMAIL = str(BIN / "postroom-sendmail")


@pytest.fixture(scope="session")
def example_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("template") / "site"
    subprocess.run([POSTROOM, "init", str(d), "--example"], check=True, capture_output=True)
    return d


@pytest.fixture
def example_site(example_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the example site for each test."""
    d = tmp_path / "site"
    shutil.copytree(example_template, d)
    return d


def run(*args: str, site: Path | None = None, input: str | bytes | None = None,
        cmd: str = POSTROOM) -> subprocess.CompletedProcess[str]:
    argv = [cmd, *args]
    if site is not None:
        argv += ["--site", str(site)]
    return subprocess.run(argv, capture_output=True, text=isinstance(input, str) or input is None,
                          input=input, timeout=60)
