"""What ``postroom --help`` and ``postroom status`` tell an admin, as they see it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import POSTROOM


def help_of(*group: str, columns: int = 80) -> str:
    r = subprocess.run([POSTROOM, *group, "--help"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "COLUMNS": str(columns)})
    assert r.returncode == 0, r.stderr
    return r.stdout


def summaries(text: str) -> dict[str, str]:
    """The Commands section: name -> summary (a long one wrapped onto more lines)."""
    found: dict[str, str] = {}
    name = ""
    for line in text.split("\nCommands:\n", 1)[1].splitlines():
        if not line.startswith("   "):
            name, _, line = line.strip().partition(" ")
            found[name] = ""
        found[name] = " ".join([found[name], line.strip()]).strip()
    return found


@pytest.mark.parametrize("group", [(), ("queue",), ("users",), ("lists",), ("db",)])
def test_no_summary_is_cut_off(group: tuple[str, ...]) -> None:
    for name, summary in summaries(help_of(*group)).items():
        assert summary.endswith((".", ")", "?")) and not summary.endswith("..."), name


@pytest.mark.parametrize("group", [(), ("queue",), ("users",), ("lists",), ("db",)])
def test_admin_summaries_fit_one_line(group: tuple[str, ...]) -> None:
    lines = help_of(*group).split("\nCommands:\n", 1)[1].splitlines()
    names = [line.split()[0] for line in lines if not line.startswith("   ")]
    one_line = {"db", "init", "lists", "queue", "quiesce", "resume", "status", "users",
                "verify"} if not group else set(names)
    assert one_line <= set(names)
    for i, line in enumerate(lines):
        if line.split()[0] in one_line and not line.startswith("   "):
            assert i + 1 == len(lines) or not lines[i + 1].startswith("   "), line


def test_top_level_summaries_wrap_instead_of_being_cut() -> None:
    found = summaries(help_of(columns=50))
    assert found["quiesce"] == "Take and deliver no mail, rejecting none (421)."
    assert all(not s.endswith("...") for s in found.values())


def test_import_keep_says_what_it_does() -> None:
    text = " ".join(help_of("queue", "import").split())
    assert ("--keep Leave SOURCE untouched (for a read-only disk): imported envelopes are not "
            "moved to SOURCE/imported/. A later import skips what is still queued here but "
            "queues again what was delivered since.") in text
    assert "twice" not in text


def test_status_says_plainly_that_no_server_runs(example_site: Path) -> None:
    r = subprocess.run([POSTROOM, "status", "--site", str(example_site)], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [
        f"site: {example_site}",
        "server: not running: no postroom serve runs for this site, so no mail is taken or "
        "delivered",
        "mode: not quiescent (a server started now would take mail)",
        "queue: 0 message(s)",
        "last export: none recorded (serve runs it on its schedule)",
        "last backup: none: [backup] dest is not set, so serve takes none (postroom backup "
        "DEST by hand or cron)",
    ]
