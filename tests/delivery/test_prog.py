"""The prog courier: real scripts on stdin, sysexits, timeouts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from postroom.delivery.prog import ProgCourier, argv_of, command_of
from postroom.types import Job, Outcome
from tests.delivery.conftest import MESSAGE, SENDER, SiteFactory, make_job


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def prog_job(command: str, recipient: str = "sys-announce@inf.example.ac.uk") -> Job:
    job = make_job("prog", "", [f'"|{command}"'])
    job.envelope.recipients[0].address = recipient
    return job


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(("user", "argv"), [
    ('"|/usr/bin/prog post list"', ["/usr/bin/prog", "post", "list"]),
    ("|/usr/bin/prog   'two words'", ["/bin/sh", "-c", "/usr/bin/prog   'two words'"]),
    ('"|/usr/bin/prog > /tmp/x"', ["/bin/sh", "-c", "/usr/bin/prog > /tmp/x"]),
    ('"|/usr/bin/prog $HOME"', ["/bin/sh", "-c", "/usr/bin/prog $HOME"]),
    ('"|FOO=1 /usr/bin/prog"', ["/bin/sh", "-c", "FOO=1 /usr/bin/prog"]),
    ('"|/usr/bin/prog a*"', ["/bin/sh", "-c", "/usr/bin/prog a*"]),
])
def test_command_runs_without_shell_unless_needed(user: str, argv: list[str]) -> None:
    assert argv_of(command_of(user)) == argv


async def test_message_on_stdin_and_environment(make_site: SiteFactory, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTROOM_SECRET", "do-not-leak")
    site = make_site()
    out = tmp_path / "out"
    prog = script(tmp_path / "catch", f"""cat > {out}/stdin
env > {out}/env
pwd > {out}/cwd
echo "$@" > {out}/args
""")
    out.mkdir()
    [a] = await ProgCourier(site).deliver(prog_job(f"{prog} post sys-announce"))
    assert (a.outcome, a.code, a.status) == (Outcome.SENT, 250, "2.0.0"), a.reply
    stdin = (out / "stdin").read_bytes()
    assert stdin == (f"Return-Path: <{SENDER}>\n"
                     "Delivered-To: sys-announce@inf.example.ac.uk\n").encode() \
        + MESSAGE.replace(b"\r\n", b"\n")
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines()
               if "=" in line)
    assert env["SENDER"] == SENDER
    assert env["RECIPIENT"] == "sys-announce@inf.example.ac.uk"
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["HOME"] == str(site.home)
    assert "POSTROOM_SECRET" not in env and "VIRTUAL_ENV" not in env
    assert (out / "cwd").read_text().strip() == str(site.home)
    assert (out / "args").read_text().strip() == "post sys-announce"


async def test_shell_command(make_site: SiteFactory, tmp_path: Path) -> None:
    target = tmp_path / "piped"
    [a] = await ProgCourier(make_site()).deliver(prog_job(f"/bin/cat > {target}"))
    assert a.outcome is Outcome.SENT
    assert target.read_bytes().endswith(b"Bye.\n")


@pytest.mark.parametrize(("code", "outcome", "reply"), [
    (75, Outcome.DEFERRED, (451, "4.3.0")),
    (67, Outcome.FAILED, (550, "5.1.1")),
    (68, Outcome.FAILED, (550, "5.1.2")),
    (74, Outcome.DEFERRED, (451, "4.3.0")),
])
async def test_sysexits(make_site: SiteFactory, tmp_path: Path, code: int, outcome: Outcome,
                        reply: tuple[int, str]) -> None:
    prog = script(tmp_path / "exit", f"cat >/dev/null\nexit {code}\n")
    [a] = await ProgCourier(make_site()).deliver(prog_job(str(prog)))
    assert (a.outcome, a.code, a.status) == (outcome, *reply)
    assert f"exited {code}" in a.text


async def test_failure_carries_stderr(make_site: SiteFactory, tmp_path: Path) -> None:
    prog = script(tmp_path / "fail", "cat >/dev/null\necho 'list sys-announce: no such list' >&2\n"
                  "exit 1\n")
    [a] = await ProgCourier(make_site()).deliver(prog_job(str(prog)))
    assert (a.outcome, a.code, a.status) == (Outcome.FAILED, 554, "5.3.0")
    assert "list sys-announce: no such list" in a.text


async def test_output_is_bounded(make_site: SiteFactory, tmp_path: Path) -> None:
    prog = script(tmp_path / "chatty", "head -c 200000 /dev/zero | tr '\\0' x >&2\nexit 1\n")
    [a] = await ProgCourier(make_site()).deliver(prog_job(str(prog)))
    assert a.outcome is Outcome.FAILED
    assert 1000 < len(a.text) < 1200


async def test_program_that_ignores_stdin(make_site: SiteFactory, tmp_path: Path) -> None:
    big = MESSAGE + b"x" * 1_000_000 + b"\r\n"
    prog = script(tmp_path / "deaf", "exit 0\n")
    job = make_job("prog", "", [f'"|{prog}"'], message=big)
    [a] = await ProgCourier(make_site()).deliver(job)
    assert a.outcome is Outcome.SENT


async def test_missing_command_fails(make_site: SiteFactory, tmp_path: Path) -> None:
    [a] = await ProgCourier(make_site()).deliver(prog_job(str(tmp_path / "nosuch")))
    assert (a.outcome, a.status) == (Outcome.FAILED, "5.3.0")
    assert "cannot run" in a.text


async def test_timeout_kills_the_process_group(make_site: SiteFactory, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    prog = script(tmp_path / "sleepy", f"""sleep 30 &
echo $$ $! > {pids}
wait
""")
    site = make_site(delivery={"prog_timeout": 1})
    started = time.monotonic()
    [a] = await ProgCourier(site).deliver(prog_job(str(prog)))
    assert time.monotonic() - started < 5
    assert (a.outcome, a.code, a.status) == (Outcome.DEFERRED, 451, "4.4.7")
    assert "timed out" in a.text
    shell, child = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 3
    while (alive(shell) or alive(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(shell) and not alive(child)
    with pytest.raises(ProcessLookupError):
        os.kill(shell, 0)
