"""Map readers: sendmail source formats, table-driven, plus fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom.errors import MapError
from postroom.routing import maps


def write(tmp_path: Path, text: str, name: str = "map") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_aliases_every_target_kind(tmp_path: Path) -> None:
    p = write(tmp_path, '''# comment
postmaster: root
root: \\root, sysman
sys-announce: "|/var/mailman/mail/mailman post sys-announce"
archive: /var/spool/archive.mbox
staff: :include:lists/staff
helpdesk: rt,
    help@remote.example,
\tthird
"quoted name": x
owner-list: neilb
list-request: "|/usr/bin/req list, with comma"
''')
    m = maps.read_aliases(p)
    assert m.entries["postmaster"] == (("root",), 2)
    assert m.entries["root"][0] == ("\\root", "sysman")
    assert m.entries["sys-announce"][0] == ('"|/var/mailman/mail/mailman post sys-announce"',)
    assert m.entries["archive"][0] == ("/var/spool/archive.mbox",)
    assert m.entries["staff"][0] == (":include:lists/staff",)
    assert m.entries["helpdesk"] == (("rt", "help@remote.example", "third"), 7)
    assert m.entries["quoted name"][0] == ("x",)
    assert m.entries["owner-list"][0] == ("neilb",)
    assert m.entries["list-request"][0] == ('"|/usr/bin/req list, with comma"',)


def test_continuation_lines_join(tmp_path: Path) -> None:
    m = maps.read_aliases(write(tmp_path, "a: b,\n  c,\n\td\ne: f\n"))
    assert m.entries["a"] == (("b", "c", "d"), 1)
    assert m.entries["e"] == (("f",), 4)


def test_names_fold_case_unless_told(tmp_path: Path) -> None:
    p = write(tmp_path, "NeilB: x\n")
    assert "neilb" in maps.read_aliases(p)
    assert "NeilB" in maps.read_aliases(p, fold_case=False)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("ok: x\nno colon here\n", 2, "missing ':'"),
    ("a: \"|unclosed\n", 1, "quote"),
    ("  leading: x\n", 1, "continuation"),
    ("a:\n", 1, "no targets"),
    ("a: :include:\n", 1, ":include: needs a file name"),
    ("bad name: x\n", 1, "no spaces"),
])
def test_aliases_errors_name_file_and_line(tmp_path: Path, text: str, line: int,
                                           words: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(MapError) as e:
        maps.read_aliases(p)
    assert e.value.line == line
    assert str(e.value).startswith(f"{p}:{line}: ")
    assert words in str(e.value)


def test_duplicate_alias_warns_first_wins(tmp_path: Path) -> None:
    m = maps.read_aliases(write(tmp_path, "a: x\na: y\n"))
    assert m.entries["a"][0] == ("x",)
    assert "duplicate alias 'a'" in m.warnings[0]


def test_virtusertable_forms(tmp_path: Path) -> None:
    m = maps.read_virtusertable(write(tmp_path, """
Bob@Cogsci.Example   bob
@cogsci.example      error:nouser No such user
carol@cogsci.example error:5.1.1:550 Carol has left
@research.example    %1@staffmail.example
"""))
    assert m.entries["bob@cogsci.example"][0] == "bob"
    assert m.entries["@cogsci.example"][0] == "error:nouser No such user"
    assert m.entries["@research.example"][0] == "%1@staffmail.example"


@pytest.mark.parametrize("line", ["nodomain target", "a@b", "a@b two words",
                                  "a@b error:6.1.1:650 x", "a@b error:bogus"])
def test_virtusertable_errors(tmp_path: Path, line: str) -> None:
    with pytest.raises(MapError) as e:
        maps.read_virtusertable(write(tmp_path, f"# head\n{line}\n"))
    assert e.value.line == 2


def test_mailertable(tmp_path: Path) -> None:
    m = maps.read_mailertable(write(tmp_path, "Staff.Example esmtp:[smtp.staff.example]\n"
                                               ".ed.example relay:relay.ed.example\n"))
    assert m.entries["staff.example"][0] == "esmtp:[smtp.staff.example]"
    assert m.entries[".ed.example"][0] == "relay:relay.ed.example"
    with pytest.raises(MapError, match="must be one of"):
        maps.read_mailertable(write(tmp_path, "x.example uucp:host\n"))


@pytest.mark.parametrize("target", ["esmtp:[smtp.staff.example", "esmtp:smtp.staff.example]",
                                    "relay:[relay.example]]", "relay:[relay.example]2526",
                                    "esmtp:[[relay.example]]", "esmtp:[]:25"])
def test_mailertable_brackets_must_balance(tmp_path: Path, target: str) -> None:
    text = f"ok.example esmtp:[127.0.0.1]:2526\nstaff.example {target}\n"
    with pytest.raises(MapError) as e:
        maps.read_mailertable(write(tmp_path, text, "mailertable"))
    assert (e.value.file, e.value.line) == (str(tmp_path / "mailertable"), 2)
    assert f"target {target!r}: brackets must balance" in str(e.value)


@pytest.mark.parametrize(("value", "code", "status", "text"), [
    ("error:nouser", 550, "5.1.1", "No such user"),
    ("error:nouser Gone away", 550, "5.1.1", "Gone away"),
    ("error:5.1.1:550 Carol has left", 550, "5.1.1", "Carol has left"),
    ("error:4.3.0:451 Try later", 451, "4.3.0", "Try later"),
    ("error:550 Nope", 550, "5.0.0", "Nope"),
])
def test_parse_error(value: str, code: int, status: str, text: str) -> None:
    e = maps.parse_error(value)
    assert (e.code, e.status, e.text) == (code, status, text)


def test_not_utf8_is_named(tmp_path: Path) -> None:
    p = tmp_path / "map"
    p.write_bytes(b"a: b\nc: \xff\n")
    with pytest.raises(MapError, match=r":2: not UTF-8"):
        maps.read_aliases(p)


target = st.from_regex(r"[a-zA-Z0-9|/.+_@-][a-zA-Z0-9|/.+_@:-]{0,11}", fullmatch=True)


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9._-]{0,10}", fullmatch=True),
                       st.lists(target, min_size=1, max_size=4), max_size=20))
def test_aliases_round_trip(tmp_path_factory: pytest.TempPathFactory,
                            table: dict[str, list[str]]) -> None:
    p = tmp_path_factory.mktemp("fuzz") / "aliases"
    p.write_text("".join(f"{k}: {', '.join(v)}\n" for k, v in table.items()))
    m = maps.read_aliases(p)
    assert {k: list(v[0]) for k, v in m.entries.items()} == table  # type: ignore[arg-type]


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_reader_never_crashes_on_garbage(tmp_path_factory: pytest.TempPathFactory,
                                         text: str) -> None:
    """Any input either loads or fails with a MapError that names the file."""
    p = tmp_path_factory.mktemp("garbage") / "aliases"
    p.write_text(text, encoding="utf-8")
    try:
        maps.read_aliases(p)
    except MapError as e:
        assert str(e).startswith(f"{p}:")


def test_include_targets_are_listed_in_order_without_duplicates(tmp_path: Path) -> None:
    m = maps.read_aliases(write(tmp_path, "a: x, :include:one, y\nb: :include:two,\n"
                                          "  :include:three\na: :include:four\n"))
    assert m.includes == [(":include:one", 1), (":include:two", 2), (":include:three", 2)]


@pytest.mark.parametrize("name", ["a b", "a\u2003b", "a\u00a0b"])
def test_alias_names_with_any_white_space_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(MapError, match="bad alias name"):
        maps.read_aliases(write(tmp_path, f"{name}: x\n"))


def reference_read_aliases(path: Path) -> maps.Map:
    """The aliases reader written plainly (as it was before its fast paths): the readers
    must agree with it on every input, in entries, warnings and the error raised."""
    text = path.read_bytes().decode("utf-8")
    logical: list[tuple[int, str]] = []
    start, pending = 0, []
    for no, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if line[:1] in (" ", "\t"):
            stripped = line.strip()
            if stripped.startswith("#") or not stripped:
                continue
            if not pending:
                logical.append((no, "\0continuation"))
                break
            pending.append(stripped)
            continue
        if pending:
            logical.append((start, " ".join(pending)))
            pending = []
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            start, pending = no, [stripped]
    else:
        if pending:
            logical.append((start, " ".join(pending)))
    result = maps.Map(str(path))
    for no, line in logical:
        if line == "\0continuation":
            raise MapError(str(path), no, "continuation line with nothing to continue; "
                           "remove the leading white space")
        if line.startswith('"'):
            end = line.find('"', 1)
            if end < 0 or line[end + 1:end + 2] != ":":
                raise MapError(str(path), no, "quoted name must be followed by ':'")
            name, rest = line[1:end], line[end + 2:]
            if not name:
                raise MapError(str(path), no, "empty alias name")
        else:
            name, colon, rest = line.partition(":")
            if not colon:
                raise MapError(str(path), no, "missing ':' after the alias name; "
                               "write 'name: target, target'")
            name = name.strip()
            if not name or len(name.split()) != 1:
                raise MapError(str(path), no, f"bad alias name {name!r}; names have no spaces "
                               "unless quoted")
        try:
            targets = maps.split_targets(rest)
        except ValueError as e:
            raise MapError(str(path), no, f"{e}; close the quote") from None
        if not targets:
            raise MapError(str(path), no, f"alias {name!r} has no targets")
        for t in targets:
            problem = maps._check_target(t)
            if problem:
                raise MapError(str(path), no, problem)
        key = name.lower()
        if key in result.entries:
            result.warnings.append(f"{path}:{no}: duplicate alias {name!r} ignored "
                                   f"(first at line {result.entries[key][1]})")
            continue
        result.entries[key] = (tuple(targets), no)
        result.includes.extend((t, no) for t in targets if t.startswith(":include:"))
    return result


map_text = st.lists(st.sampled_from([
    "a: b", "A: c, d", "x-y: e@f.example,", "  g", "\th, i", "", "# note", "  # indented note",
    "n:", "n: ,", "sp ace: x", "nbsp\u00a0x: y", '"q q": z', '"q: z', '"": z', "k: \"|p a, b\"",
    'k2: "|p', "inc: :include:f, :include:", "inc2: :include:g", "noc", "r: s\r", " lead: x",
    "u: \\u, v", "a: again", "\u00e9t\u00e9: w",
]), max_size=12).map("\n".join)


@given(map_text)
def test_aliases_reader_agrees_with_the_plain_reader(tmp_path_factory: pytest.TempPathFactory,
                                                     text: str) -> None:
    p = tmp_path_factory.mktemp("agree") / "aliases"
    p.write_text(text, encoding="utf-8", newline="")
    try:
        want: maps.Map | MapError = reference_read_aliases(p)
    except MapError as e:
        want = e
    try:
        got: maps.Map | MapError = maps.read_aliases(p)
    except MapError as e:
        got = e
    if isinstance(want, MapError):
        assert isinstance(got, MapError) and str(got) == str(want)
    else:
        assert got == want
