"""The site profile: validation errors name the file, line, key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom import site
from postroom.errors import ConfigError, ProfileError
from postroom.site import home as home_mod
from postroom.site.profile import MIN_MESSAGE_SIZE

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


# -- strict types: a value of the wrong type is an error, never converted

@pytest.mark.parametrize(("extra", "line", "field", "said", "fix"), [
    ('[[listeners]]\nname = "mx"\nrole = "mx"\nport = "2525"\n', 11, "listeners.0.port",
     'expected an integer, not the string "2525"', "write port = 2525, without quotes"),
    ('[smtp]\nworkers = 1.5\n', 9, "smtp.workers",
     "expected an integer, not the number 1.5", "give workers an integer"),
    ('[routing]\nlocal_parts_case_sensitive = 1\n', 9, "routing.local_parts_case_sensitive",
     "expected a boolean, not the integer 1",
     "write local_parts_case_sensitive = true or local_parts_case_sensitive = false"),
    ('[log]\nfile = 3\n', 9, "log.file", "expected a string, not the integer 3",
     'write file = "...", in quotes'),
    ('[maps]\naliases = "maps/aliases"\n', 9, "maps.aliases",
     'expected an array, not the string "maps/aliases"', 'write aliases = ["maps/aliases"]'),
    ('[dns]\ntimeout = true\n', 9, "dns.timeout", "true is not a duration", None),
    ('[[delivery.relays]]\nhost = "[a]"\n[[delivery.relays]]\nhost = "[b]"\nport = "587"\n',
     12, "delivery.relays.1.port", 'expected an integer, not the string "587"',
     "write port = 587, without quotes"),
])
def test_wrong_type_is_an_error_naming_key_line_and_type(
        tmp_path: Path, extra: str, line: int, field: str, said: str, fix: str | None) -> None:
    with pytest.raises(ProfileError) as e:
        site.load(write(tmp_path, GOOD + extra))
    assert (e.value.line, e.value.field) == (line, field)
    assert f"postroom.toml:{line}: {field}: {said}" in str(e.value)
    if fix:
        assert f"(fix: {fix})" in str(e.value)


def test_quoted_boolean_in_the_site_table(tmp_path: Path) -> None:
    text = GOOD.replace('domains = ["Dept.Example"]\n',
                        'domains = ["Dept.Example"]\nquiescent = "no"\n')
    with pytest.raises(ProfileError) as e:
        site.load(write(tmp_path, text))
    assert (e.value.line, e.value.field) == (4, "site.quiescent")
    assert 'expected a boolean, not the string "no"' in str(e.value)
    assert "write quiescent = true or quiescent = false, without quotes" in str(e.value)


def test_item_of_an_array_of_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as e:
        site.load(write(tmp_path, GOOD.replace('["Dept.Example"]', '["Dept.Example", 3]')))
    assert (e.value.line, e.value.field) == (3, "site.domains.1")
    assert "expected a string, not the integer 3" in str(e.value)


def test_message_size_has_a_minimum(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as e:
        site.load(write(tmp_path, GOOD + f"[limits]\nmessage_size = {MIN_MESSAGE_SIZE - 1}\n"))
    assert (e.value.line, e.value.field) == (9, "limits.message_size")
    assert f"fix: give limits.message_size a value of at least {MIN_MESSAGE_SIZE}" \
        in str(e.value)
    s = site.load(write(tmp_path, GOOD + f"[limits]\nmessage_size = {MIN_MESSAGE_SIZE}\n"))
    assert s.profile.limits.message_size == MIN_MESSAGE_SIZE


def test_missing_key_of_an_array_table_names_its_header(tmp_path: Path) -> None:
    text = GOOD + '[[listeners]]\nname = "mx"\nrole = "mx"\nport = 25\n[[listeners]]\nname = "b"\n'
    with pytest.raises(ProfileError) as e:
        site.load(write(tmp_path, text))
    assert (e.value.line, e.value.field) == (12, "listeners.1.role")
    assert "add 'role = ...' to the [[listeners]] table number 2" in str(e.value)


def test_profile_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "postroom.toml").write_bytes(b'[site]\nhostname = "caf\xe9"\n')
    with pytest.raises(ProfileError) as e:
        site.load(tmp_path)
    assert e.value.line == 2 and "not UTF-8" in str(e.value)


# -- the site home without its profile

def test_open_home_survives_a_broken_profile(tmp_path: Path) -> None:
    write(tmp_path, GOOD + "[log]\nfile = \"log/other.log\"\nbogus = 1\n")
    home = site.open_home(tmp_path)
    assert not isinstance(home, site.Site)
    assert isinstance(home.profile_error, ProfileError)
    assert home.profile_error.line == 10
    assert home.queue_dir == tmp_path / "queue"
    assert home.log_path == tmp_path / "log/other.log"  # what can still be read is used
    assert home.hostname == "mail.dept.example"
    assert not home.quiescent_now()
    home.quiesce("restoring")
    assert home.quiescent_now() and home.quiescent_reason() == "restoring"
    home.resume()
    assert not home.quiescent_now() and home.quiescent_reason() == ""
    assert home.server_pid() is None


def test_open_home_with_bad_toml_uses_defaults(tmp_path: Path) -> None:
    write(tmp_path, GOOD + "x = [\n")
    home = site.open_home(tmp_path)
    assert home.profile_error is not None and "not valid TOML" in str(home.profile_error)
    assert home.log_path == tmp_path / "log/mail.log"


def test_open_home_gives_the_site_when_the_profile_is_good(tmp_path: Path) -> None:
    home = site.open_home(write(tmp_path, GOOD))
    assert isinstance(home, site.Site) and home.profile_error is None


def test_open_home_needs_a_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no site profile here") as e:
        site.open_home(tmp_path)
    assert not isinstance(e.value, ProfileError)


def test_layout_says_what_is_backed_up() -> None:
    names = {p.name: p for p in home_mod.LAYOUT}
    assert [n for n, p in names.items() if p.backed_up] == [
        "postroom.toml", "maps", "tls", "keys", "postroom.db", "queue", "mail", "archives", "log"]
    assert not names["export"].backed_up and not names["state"].backed_up
    assert all(p.holds for p in home_mod.LAYOUT)


def test_init_makes_every_directory_of_the_layout(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from postroom.cli.init import init

    r = CliRunner().invoke(init, [str(tmp_path / "new")])
    assert r.exit_code == 0, r.output
    for part in home_mod.LAYOUT:
        if part.directory:
            assert (tmp_path / "new" / part.name).is_dir(), part.name
    assert site.load(tmp_path / "new").profile_path.is_file()
