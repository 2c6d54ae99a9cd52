"""The site profile: validation errors name the file, line, key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom import site
from postroom.errors import ConfigError

GOOD = """\
[site]
hostname = "mail.dept.example"
domains = ["Dept.Example"]

[queue]
lifetime = "5d"
delay_warning = "4h"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "postroom.toml").write_text(text)
    return tmp_path


def test_good_profile_loads_with_defaults(tmp_path: Path) -> None:
    s = site.load(write(tmp_path, GOOD))
    assert s.profile.site.domains == ["dept.example"]
    assert s.profile.queue.lifetime == 5 * 86400
    assert s.profile.queue.delay_warning == 4 * 3600
    assert s.database_url == f"sqlite:///{tmp_path}/postroom.db"
    assert "mail.dept.example" in s.local_domains


def test_unknown_key_names_line_and_known_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        site.load(write(tmp_path, GOOD + "liftime = 3\n"))
    msg = str(e.value)
    assert f"{tmp_path}/postroom.toml:8: queue.liftime: unknown key" in msg
    assert "lifetime" in msg and "fix: remove it or use one of" in msg


def test_wrong_type_names_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        site.load(write(tmp_path, GOOD.replace('"4h"', '"soon"')))
    assert e.value.line == 7
    assert e.value.field == "queue.delay_warning"
    assert "not a duration" in str(e.value)


def test_limit_beyond_what_the_server_counts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        site.load(write(tmp_path, GOOD + "concurrency = 1000\n"))
    assert (e.value.line, e.value.field) == (8, "queue.concurrency")
    assert "less than or equal to 256" in str(e.value)


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        site.load(write(tmp_path, '[site]\ndomains = ["x.example"]\n'))
    assert e.value.field == "site.hostname"
    assert "required key is missing" in str(e.value)
    assert "add 'hostname = ...' to the [site] table" in str(e.value)


def test_bad_network_in_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        site.load(write(tmp_path, GOOD + '[networks]\nrelay = ["10.0.0.0/8", "bogus"]\n'))
    assert e.value.line == 9
    assert "'bogus' is not a network" in str(e.value)


def test_listener_array_of_tables_line(tmp_path: Path) -> None:
    text = GOOD + ('[[listeners]]\nname = "mx"\nrole = "mx"\nport = 25\n'
                   '[[listeners]]\nname = "sub"\nrole = "smtp"\nport = 587\n')
    with pytest.raises(ConfigError) as e:
        site.load(write(tmp_path, text))
    assert e.value.field == "listeners.1.role"
    assert e.value.line == 14


def test_missing_map_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        site.load(write(tmp_path, GOOD + '[maps]\naliases = ["maps/aliases"]\n'))
    assert "file 'maps/aliases' does not exist" in str(e.value)
    assert e.value.line == 9


def test_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        site.load(write(tmp_path, GOOD + "x = [\n"))
    assert "not valid TOML" in str(e.value)


def test_no_profile_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="postroom init"):
        site.load(tmp_path)


def test_site_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, GOOD)
    monkeypatch.setenv("POSTROOM_SITE", str(tmp_path))
    assert site.load(None).home == tmp_path
