from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = Path(__file__).with_name("spool_child.py")


def files_under(path: Path) -> list[str]:
    """Every file and directory below ``path``, relative, sorted."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def child(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    """Start ``spool_child.py`` with ``args``; stdout is a text pipe."""
    return subprocess.Popen([sys.executable, str(CHILD), *args], stdin=stdin,
                            stdout=subprocess.PIPE, text=True)
