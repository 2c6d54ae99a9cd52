"""The processes a master starts (intake processes, web processes) die with it.

A master killed with SIGKILL cannot tell its children to stop; left alone they would go
on taking mail (intake) or serving pages (web) for a site whose master, retries and
control channel are gone, and a new ``serve`` would find them holding its ports. Linux
sends each child SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and the child
drains as it does at an ordinary stop.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
MASTER_ENV = "POSTROOM_MASTER_PID"


def child_env() -> dict[str, str]:
    """The environment to start a child with (it names the master)."""
    return {**os.environ, MASTER_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """Call first thing in a child: SIGTERM when the master goes; if it went already
    (between the fork and now), exit at once."""
    if not sys.platform.startswith("linux") or MASTER_ENV not in os.environ:
        return
    parent = int(os.environ[MASTER_ENV])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(0)
