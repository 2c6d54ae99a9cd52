"""The store's commands: postroom db / users / lists, and init --example + verify."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from postroom import site as site_mod
from postroom.cli import cli
from postroom.runtime import load_resolver
from postroom.site import Site
from postroom.store import db as store_db
from postroom.store.lists import StoreLists, all_lists
from postroom.store.users import check_password
from tests.store.test_store_db import HEAD

POSTROOM = str(Path(sys.executable).with_name("postroom"))


def run(site: Site, *args: str, input: str | None = None, code: int = 0) -> str:
    result = CliRunner().invoke(cli, [*args, "--site", str(site.home)], input=input)
    assert result.exit_code == code, (result.output, result.stderr)
    return result.output


def test_db_upgrade_and_current(store_site: Site) -> None:
    assert run(store_site, "db", "current") == "none (fix: run 'postroom db upgrade')\n"
    out = run(store_site, "db", "upgrade")
    assert f"upgraded from an empty database to {HEAD} (head)" in out
    assert store_db.current_revision(store_site) == HEAD
    assert run(store_site, "db", "current") == f"{store_db.head_revision()} (head)\n"
    assert f"already at {HEAD} (head)" in run(store_site, "db", "upgrade")


def test_users_commands(ready_site: Site) -> None:
    out = run(ready_site, "users", "add", "alice", "--address", "alice@inf.example.ac.uk",
              "--address", "Alice@lists.inf.example.ac.uk", "--password-stdin",
              input="s3cret pass phrase\n")
    assert out == ("user alice added (alice@inf.example.ac.uk, "
                   "alice@lists.inf.example.ac.uk)\n")
    assert check_password(ready_site, "alice", "s3cret pass phrase")
    # no --password-stdin: asks twice
    out = run(ready_site, "users", "add", "bob",
              input="pw-b lantern orbit\npw-b lantern orbit\n")
    assert "user bob added (no sender addresses)" in out
    assert check_password(ready_site, "bob", "pw-b lantern orbit")
    # two different answers: asked again; no more input, no user
    result = CliRunner().invoke(cli, ["users", "add", "carol", "--site", str(ready_site.home)],
                                input="one\ntwo\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    # a taken login
    result = CliRunner().invoke(cli, ["users", "add", "alice", "--password-stdin",
                                      "--site", str(ready_site.home)], input="x\n")
    assert result.exit_code == 65
    assert "user 'alice' already exists" in result.stderr

    table = run(ready_site, "users", "list")
    lines = table.splitlines()
    assert lines[0].split() == ["login", "sender", "addresses", "created", "state"]
    assert lines[1].split()[:2] == ["alice", "alice@inf.example.ac.uk"]
    assert lines[1].split()[-1] == "enabled"
    assert lines[2].split() == ["alice@lists.inf.example.ac.uk"]
    assert lines[3].split()[:2] == ["bob", "-"]
    assert "carol" not in table

    assert run(ready_site, "users", "passwd", "bob", "--password-stdin",
               input="new lantern orbit\n") == "password of bob changed\n"
    assert check_password(ready_site, "bob", "new lantern orbit")
    assert run(ready_site, "users", "del", "bob") == "user bob deleted\n"
    result = CliRunner().invoke(cli, ["users", "del", "bob", "--site", str(ready_site.home)])
    assert result.exit_code == 67
    assert "no user 'bob'" in result.stderr
    run(ready_site, "users", "del", "alice")
    assert run(ready_site, "users", "list") == "no users\n"


def test_lists_commands(ready_site: Site) -> None:
    assert run(ready_site, "lists", "create", "services-unit@lists.inf.example.ac.uk") == \
        "list services-unit@lists.inf.example.ac.uk created\n"
    assert run(ready_site, "lists", "create", "staff") == "list staff@inf.example.ac.uk created\n"
    result = CliRunner().invoke(cli, ["lists", "create", "staff@inf.example.ac.uk",
                                      "--site", str(ready_site.home)])
    assert result.exit_code == 65
    assert "already exists" in result.stderr
    result = CliRunner().invoke(cli, ["lists", "create", "x@example.com",
                                      "--site", str(ready_site.home)])
    assert result.exit_code == 65
    assert "not a domain of this site" in result.stderr
    assert run(ready_site, "lists", "list") == (
        "staff@inf.example.ac.uk\nservices-unit@lists.inf.example.ac.uk\n")
    lookup = StoreLists.load(ready_site).lookup
    assert lookup("staff-request", "lists.inf.example.ac.uk") == \
        "staff-request@inf.example.ac.uk"
    assert run(ready_site, "lists", "delete", "staff@inf.example.ac.uk") == \
        "list staff@inf.example.ac.uk deleted\n"
    run(ready_site, "lists", "delete", "staff@inf.example.ac.uk", code=67)
    assert run(ready_site, "lists", "list") == "services-unit@lists.inf.example.ac.uk\n"


def test_commands_before_upgrade_say_what_to_run(store_site: Site) -> None:
    result = CliRunner().invoke(cli, ["users", "list", "--site", str(store_site.home)])
    assert result.exit_code == 69
    assert "postroom db upgrade" in result.stderr


def _postroom(*args: str, cwd: Path, input: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POSTROOM_SITE"}
    return subprocess.run([POSTROOM, *args], cwd=cwd, input=input, capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def test_init_example_then_verify_postie(tmp_path: Path) -> None:
    site = tmp_path / "x"
    done = _postroom("init", str(site), "--example", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert store_db.current_revision(f"sqlite:///{site / 'postroom.db'}") == HEAD
    done = _postroom("verify", "postie", cwd=site)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "services-unit... deliverable: mailer list, user services-unit@lists.inf.example.ac.uk\n")


def test_init_in_process_plain_and_example(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(tmp_path / "plain")]).exit_code == 0
    plain = site_mod.load(tmp_path / "plain")
    assert store_db.current_revision(plain) == HEAD
    assert all_lists(plain) == []
    assert runner.invoke(cli, ["init", str(tmp_path / "ex"), "--example"]).exit_code == 0
    example = site_mod.load(tmp_path / "ex")
    assert [x.address for x in all_lists(example)] == ["services-unit@lists.inf.example.ac.uk"]
    # --force over the example again keeps its one list
    assert runner.invoke(cli, ["init", str(tmp_path / "ex"), "--example", "--force"]
                         ).exit_code == 0
    assert len(all_lists(example)) == 1
    resolver = load_resolver(tmp_path / "ex")
    assert [r.sendmail_line() for r in resolver.resolve("postie").routes] == [
        "services-unit... deliverable: mailer list, user services-unit@lists.inf.example.ac.uk"]


@pytest.mark.postgres
def test_verify_reads_lists_from_postgres(pg_url: str, tmp_path: Path) -> None:
    site = tmp_path / "pg"
    assert CliRunner().invoke(cli, ["init", str(site), "--example"]).exit_code == 0
    (site / "postroom.db").unlink()  # the site moves to PostgreSQL
    profile = site / "postroom.toml"
    profile.write_text(profile.read_text() + f'\n[database]\nurl = "{pg_url}"\n')
    pg_site = site_mod.load(site)
    assert f"upgraded from an empty database to {HEAD} (head)" in run(pg_site, "db", "upgrade")
    run(pg_site, "lists", "create", "services-unit@lists.inf.example.ac.uk")
    store_db.dispose_engines()
    done = _postroom("verify", "postie", cwd=site)
    assert done.stdout == (
        "services-unit... deliverable: mailer list, user services-unit@lists.inf.example.ac.uk\n")
    assert not (site / "postroom.db").exists()
