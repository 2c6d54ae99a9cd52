"""Fuzz target ``maps``: every reader of ``postroom.routing.maps`` (aliases and forwards,
:include: files, virtusertable, mailertable, local users) and ``SiteMaps.load`` with
:include: chains, on random text and random bytes (non-UTF-8 included). Each either
returns entries or raises MapError naming the file and a line that exists in it (for a
missing :include: file, the line that names it); nothing else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom import site as site_mod
from postroom.errors import MapError
from postroom.routing import maps
from postroom.routing.mapset import SiteMaps
from tests.fuzz.harness import (
    Target,
    Violation,
    corpus_examples,
    corpus_params,
    fuzz_settings,
    require,
)

READERS = Target("maps", hang_after=2.0)
INCLUDES = Target("maps_includes", hang_after=2.0)

Reader = Callable[[Path], maps.Map]
ALL_READERS: dict[str, Reader] = {
    "aliases": maps.read_aliases,
    "aliases-case": lambda p: maps.read_aliases(p, fold_case=False),
    "include": maps.read_include,
    "virtusertable": maps.read_virtusertable,
    "virtusertable-case": lambda p: maps.read_virtusertable(p, fold_case=False),
    "mailertable": maps.read_mailertable,
    "names": maps.read_names,
}

# -- what map files are made of

_CHARS = st.one_of(st.sampled_from([*' \t:,"\\|/@%#+.[]-_=*', "\u2028", "é", "\r"]),
                   st.sampled_from("abcnouserXYZ0159"),
                   st.characters(codec="utf-8"))
_WORD = st.text(_CHARS, max_size=10)
_NAME = st.one_of(st.from_regex(r"[a-z][a-z0-9.+_-]{0,8}", fullmatch=True), _WORD,
                  _WORD.map(lambda w: f'"{w}"'))
_STATUS = st.one_of(st.from_regex(r"[245]\.[0-9]{1,2}\.[0-9]{1,2}", fullmatch=True), _WORD)
_CODE = st.one_of(st.integers(0, 999).map(str), _WORD)
_ERROR = st.one_of(
    st.builds(lambda t: f"error:nouser {t}", _WORD),
    st.builds(lambda s, c, t: f"error:{s}:{c} {t}", _STATUS, _CODE, _WORD),
    st.builds(lambda c, t: f"error:{c} {t}", _CODE, _WORD),
    st.builds(lambda s, t: f"error:{s} {t}", _STATUS, _WORD),
    st.builds(lambda w: "error:" + w, _WORD))
_HOST = st.one_of(_WORD, st.builds(lambda h, p: f"[{h}]{p}", _WORD,
                                   st.sampled_from(["", ":25", ":", ":x", "]", "[:1"])))
_TARGET = st.one_of(
    _NAME, st.builds(lambda w: f"\\{w}", _WORD), st.builds(lambda w: f'"|{w}"', _WORD),
    st.builds(lambda w: f"/{w}", _WORD), st.builds(lambda w: f":include:{w}", _WORD),
    st.builds(lambda a, b: f"{a}@{b}", _WORD, _WORD), _ERROR, st.just('"'))
_TARGETS = st.lists(_TARGET, max_size=4).map(", ".join)
_LINE = st.one_of(
    st.builds(lambda n, sep, t: f"{n}{sep}{t}", _NAME, st.sampled_from([":", ": ", " ", ""]),
              _TARGETS),                                                  # aliases
    st.builds(lambda k, v: f"{k}\t{v}", st.one_of(_WORD, _WORD.map("@".__add__),
                                                  st.builds("{}@{}".format, _WORD, _WORD)),
              st.one_of(_TARGET, _ERROR)),                               # virtusertable
    st.builds(lambda d, m, h: f"{d} {m}:{h}", _WORD,
              st.sampled_from([*sorted(maps.MAILERTABLE_MAILERS), "bogus", ""]),
              st.one_of(_HOST, _ERROR.map(lambda e: e[6:]))),             # mailertable
    st.builds(lambda ws, t: ws + t, st.sampled_from([" ", "\t", "  \t"]), _TARGETS),  # more
    st.sampled_from(["", "#", "# comment", "   ", "\t# indented comment", "\\"]),
    st.text(_CHARS, max_size=30),
)
_TEXT_FILE = st.builds(lambda lines, end, last: end.join(lines) + last,
                       st.lists(_LINE, max_size=12), st.sampled_from(["\n", "\r\n"]),
                       st.sampled_from(["", "\n"])).map(lambda t: t.encode("utf-8"))
_BROKEN_UTF8 = st.builds(lambda a, bad, b: a + bad + b, _TEXT_FILE,
                         st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc"]),
                         _TEXT_FILE)
MAP_FILE = st.one_of(_TEXT_FILE, _BROKEN_UTF8, st.binary(max_size=200),
                     st.text(max_size=200).map(lambda t: t.encode("utf-8")))


def lines_in(data: bytes) -> int:
    """How many lines a reader can name: LF-separated, a last line without LF counts."""
    return data.count(b"\n") + 1


def check_map_error(e: MapError, files: dict[Path, bytes]) -> None:
    by_name = {str(p): data for p, data in files.items()}
    require(e.file in by_name, f"MapError names {e.file!r}, not one of the map files")
    data = by_name[e.file]
    require(1 <= e.line <= lines_in(data),
            f"MapError line {e.line} out of range 1..{lines_in(data)}: {e}")
    require(str(e).startswith(f"{e.file}:{e.line}: "), f"message does not start with "
            f"file:line: {e}")


def check_reader(reader: Reader, path: Path, data: bytes) -> None:
    try:
        result = reader(path)
    except MapError as e:
        check_map_error(e, {path: data})
        return
    require(isinstance(result, maps.Map) and result.file == str(path),
            f"reader returned {result!r}")
    for key, (_, line) in result.entries.items():
        require(isinstance(key, str) and 1 <= line <= lines_in(data),
                f"entry {key!r} at line {line}, out of range 1..{lines_in(data)}")
    for w in result.warnings:
        require(isinstance(w, str) and w.startswith(f"{path}:"), f"bad warning {w!r}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-maps")


def run_readers(workdir: Path, data: bytes) -> None:
    path = workdir / "map"
    path.write_bytes(data)
    for name, reader in ALL_READERS.items():
        try:
            check_reader(reader, path, data)
        except Violation as e:
            raise Violation(f"{name}: {e}") from None


@corpus_examples("maps", lambda data: {"data": data})
@fuzz_settings(300)
@given(data=MAP_FILE)
def test_readers_return_entries_or_map_error(workdir: Path, data: bytes) -> None:
    READERS.check(data, lambda: run_readers(workdir, data))


@pytest.mark.parametrize("data", corpus_params("maps"))
def test_corpus(workdir: Path, data: bytes) -> None:
    run_readers(workdir, data)


# -- :include: chains through SiteMaps.load

INCLUDE_NAMES = ("maps/inc0", "maps/inc1", "maps/inc2")
_INCLUDE = st.sampled_from([*INCLUDE_NAMES, "maps/missing", "", " ", "maps", "/nonexistent/x"])
_INCLUDE_TARGET = st.one_of(*[_INCLUDE.map(":include:".__add__)] * 3,
                            st.from_regex(r"[a-z]{1,5}(@[a-z.]{1,8})?", fullmatch=True), _TARGET)
_INCLUDE_TARGETS = st.lists(_INCLUDE_TARGET, min_size=1, max_size=3).map(", ".join)
_COMMENT = st.sampled_from(["", "# comment", "\t# indented comment"])
_ALIAS_FILE = st.lists(st.one_of(
    st.builds(lambda n, t: f"{n}: {t}", st.from_regex(r"[a-z]{1,6}", fullmatch=True),
              _INCLUDE_TARGETS),
    st.builds(lambda n, t: f"{n}: {t}", _NAME, _INCLUDE_TARGETS),
    _INCLUDE_TARGETS.map("  ".__add__), _COMMENT), max_size=6).map(
    lambda lines: "\n".join(lines).encode("utf-8"))
_INCLUDE_FILE = st.lists(st.one_of(_INCLUDE_TARGETS, _INCLUDE_TARGETS.map("\t".__add__),
                                   _COMMENT), max_size=6).map(
    lambda lines: "\n".join(lines).encode("utf-8"))
# aliases, forwards, inc0, inc1, inc2
SITE_FILES = st.tuples(_ALIAS_FILE, _ALIAS_FILE, _INCLUDE_FILE, _INCLUDE_FILE,
                       st.one_of(_INCLUDE_FILE, MAP_FILE))
PROFILE = """\
[site]
hostname = "mail.fuzz.example"
domains = ["fuzz.example"]

[maps]
aliases = ["maps/aliases"]
forwards = ["maps/forwards"]
"""
FILE_NAMES = ("maps/aliases", "maps/forwards", *INCLUDE_NAMES)
SEPARATOR = b"\n\x00--- next file ---\x00\n"  # between the files of one corpus input


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory) -> site_mod.Site:
    home = tmp_path_factory.mktemp("fuzz-site")
    (home / "maps").mkdir()
    for name in FILE_NAMES[:2]:
        (home / name).write_text("")
    (home / "postroom.toml").write_text(PROFILE)
    return site_mod.load(home)


def run_includes(site: site_mod.Site, contents: tuple[bytes, ...]) -> None:
    files = {site.home / name: data for name, data in zip(FILE_NAMES, contents, strict=True)}
    for path, data in files.items():
        path.write_bytes(data)
    try:
        SiteMaps.load(site)
    except MapError as e:
        check_map_error(e, files)
        if "does not exist" in str(e):  # the entry named is the one with that :include:
            entry = entry_at(files[Path(e.file)], e.line)
            wanted = str(e)[len(f"{e.file}:{e.line}: "):].split(": file ", 1)[0]
            require(wanted in entry,
                    f"{e}: the entry at line {e.line} of {e.file} is {entry!r}, "
                    f"without {wanted!r}")


def entry_at(data: bytes, line: int) -> str:
    """The entry that starts at ``line``, as the reader joins it: that line and the
    continuation lines after it (indented comments and blank lines skipped)."""
    lines = [x.rstrip("\r") for x in data.decode("utf-8").split("\n")[line - 1:]]
    entry = [lines[0].strip()]
    for x in lines[1:]:
        if x[:1] not in (" ", "\t"):
            break
        if x.strip() and not x.strip().startswith("#"):
            entry.append(x.strip())
    return " ".join(entry)


def _split_files(data: bytes) -> dict[str, tuple[bytes, ...]]:
    parts = [*data.split(SEPARATOR), b"", b"", b"", b"", b""][:5]
    return {"contents": tuple(parts)}


@corpus_examples("maps_includes", _split_files)
@fuzz_settings(200)
@given(contents=SITE_FILES)
def test_include_chains_load_or_map_error(fuzz_site: site_mod.Site,
                                          contents: tuple[bytes, ...]) -> None:
    INCLUDES.check(SEPARATOR.join(contents), lambda: run_includes(fuzz_site, contents))


@pytest.mark.parametrize("data", corpus_params("maps_includes"))
def test_includes_corpus(fuzz_site: site_mod.Site, data: bytes) -> None:
    run_includes(fuzz_site, _split_files(data)["contents"])
