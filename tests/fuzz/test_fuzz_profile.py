"""Fuzz target ``profile``: ``postroom.site.load`` (and ``open_home``) on random TOML-ish
text, random bytes, and random valid TOML documents built from the real schema's tables
and keys. Each gives a Site, or a ConfigError (or subclass) whose message names the
profile file, with a line that exists in it; nothing else."""

from __future__ import annotations

import datetime as dt
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from postroom import site as site_mod
from postroom.errors import ConfigError, ProfileError
from postroom.site.profile import MapsSection, Profile
from tests.fuzz.harness import (
    Target,
    corpus_examples,
    corpus_params,
    fuzz_settings,
    require,
)

TARGET = Target("profile", hang_after=2.0)
MAP_FILES = ("maps/aliases", "maps/forwards", "maps/virtusertable", "maps/mailertable",
             "maps/local-users")

# -- TOML values and documents

_TRICKY = ["\u2028", "\x85", "\x0c", "\x1c", "\r", "\n", "\t", '"', "\\", "'", "\x7f", "\0",
           "é", "#", "=", "[", "]", "."]
_TEXT = st.text(st.one_of(st.sampled_from(_TRICKY), st.sampled_from("abcdmsh059:/@ "),
                          st.characters(codec="utf-8")), max_size=20)
_PLAUSIBLE_STR = st.sampled_from([
    "", "5d", "30s", "4h", " 2 m", "1.5h", "5x", "-1s", "maps/aliases", "maps/forwards",
    "maps/missing", "127.0.0.1/32", "::1/128", "10.0.0.0/33", "192.0.2.1", "example.org",
    "[relay.example]:25", "mail.example", "sqlite:///x.db", "x" * 300, "/", "a/" * 200,
    "hub", "null-client", "mx", "submission", "submissions", "opportunistic", "required",
    "verify", "never", "aliases", "forwards", "lists", "local", "\u2028\u2028\u2028"])
_STR = st.one_of(_PLAUSIBLE_STR, _TEXT)
_MAP_FILE = st.one_of(st.sampled_from(MAP_FILES), st.sampled_from(MAP_FILES),
                      st.sampled_from(["maps", "maps/missing", "x" * 300, "a\0b", "", "/",
                                       "maps/aliases/", f"{'d/' * 60}f"]))
_INT = st.one_of(st.integers(-3, 70000), st.sampled_from([0, 1, 80, 1023, 1024, 65535, 65536,
                                                          2**31, 2**63 - 1, -(2**63)]))
_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
_DATETIME = st.one_of(st.datetimes(), st.dates(), st.times(),
                      st.datetimes(timezones=st.just(dt.UTC)))
_SCALAR: st.SearchStrategy[Any] = st.one_of(_STR, _INT, _FLOAT, st.booleans(), _DATETIME)
_VALUE: st.SearchStrategy[Any] = st.recursive(
    _SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                     st.dictionaries(_STR, inner, max_size=2)), max_leaves=6)


def plausible(annotation: Any, strict: bool) -> st.SearchStrategy[Any]:
    """Values of the type a schema key takes; ``strict``: only those (and strings from a
    list of likely ones), else now and then a value of any type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is bool:
        typed: st.SearchStrategy[Any] = st.booleans()
    elif annotation is int:
        typed = _INT
    elif annotation is float:
        typed = st.one_of(_FLOAT, _INT, _PLAUSIBLE_STR)
    elif annotation is str:
        typed = _PLAUSIBLE_STR if strict else _STR
    elif origin is typing.Literal:
        typed = st.sampled_from(args) if strict else st.one_of(st.sampled_from(args), _STR)
    elif origin is list:
        typed = st.lists(plausible(args[0], strict), max_size=3)
    elif origin in (typing.Union, types.UnionType):
        typed = st.one_of(*(plausible(a, strict) for a in args))
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        typed = table(annotation, strict)
    else:
        typed = _VALUE
    return typed if strict else st.one_of(typed, typed, typed, _VALUE)


def table(model: type[BaseModel], strict: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A table of ``model``: some of its keys with plausible values, and unless
    ``strict``, now and then a key the schema does not have."""
    keys = {name: plausible(f.annotation, strict) for name, f in model.model_fields.items()}
    if strict:  # mostly a key's default, so that the rest of the document is good too
        for name, f in model.model_fields.items():
            default = f.get_default(call_default_factory=True)
            if isinstance(default, bool | int | float | str | list):
                keys[name] = st.one_of(st.just(default), st.just(default), keys[name])
    if model is MapsSection:  # file lists: files that exist, mostly
        for name in set(keys) - {"order"}:
            keys[name] = st.lists(_MAP_FILE, max_size=3) if strict else \
                st.one_of(keys[name], st.lists(_MAP_FILE, max_size=3))
    known = st.fixed_dictionaries({}, optional=keys)
    if strict:
        return known
    extra = st.dictionaries(st.one_of(_STR, st.sampled_from(sorted(keys))), _VALUE, max_size=1)
    return st.builds(lambda a, b, noise: {**a, **b} if noise else a, known, extra,
                     st.integers(0, 4).map(lambda n: n == 0))


def _string(s: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, but for DEL)."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _string(k)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else "inf" if v == float("inf") else \
            "-inf" if v == float("-inf") else repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_document(doc: dict[str, Any]) -> str:
    """TOML text for ``doc``: tables as [table] sections, lists of tables as [[table]]."""
    out = [f"{_key(k)} = {toml_value(v)}" for k, v in doc.items()
           if not _is_table(v) and not _is_table_list(v)]
    for k, v in doc.items():
        if _is_table(v):
            _section(out, [k], v)
        elif _is_table_list(v):
            for item in v:
                _section(out, [k], item, array=True)
    return "\n".join(out) + "\n"


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _section(out: list[str], path: list[str], v: dict[str, Any], *, array: bool = False) -> None:
    name = ".".join(_key(p) for p in path)
    out.append(f"\n[[{name}]]" if array else f"\n[{name}]")
    out += [f"{_key(k)} = {toml_value(x)}" for k, x in v.items()
            if not _is_table(x) and not _is_table_list(x)]
    for k, x in v.items():
        if _is_table(x):
            _section(out, [*path, k], x)
        elif _is_table_list(x):
            for item in x:
                _section(out, [*path, k], item, array=True)




def _document(strict: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A profile document: a [site] table (mostly with a good host name and domain) and
    any other tables of the schema."""
    site_keys = Profile.model_fields["site"].annotation.model_fields  # type: ignore[union-attr]
    site = st.fixed_dictionaries(
        {"hostname": st.one_of(st.just("mail.fuzz.example"), _PLAUSIBLE_STR if strict else _STR),
         "domains": st.one_of(st.just(["fuzz.example"]),
                              st.lists(_PLAUSIBLE_STR, min_size=1, max_size=2) if strict
                              else st.lists(_STR, max_size=2))},
        optional={k: plausible(f.annotation, strict) for k, f in site_keys.items()
                  if k not in ("hostname", "domains")})
    rest = st.fixed_dictionaries({}, optional={
        name: plausible(f.annotation, strict) for name, f in Profile.model_fields.items()
        if name != "site"})
    return st.builds(lambda s, r: {"site": s, **r} if s is not None else r,
                     st.one_of(site, st.none()) if not strict else site, rest)


DOCUMENT = st.one_of(_document(strict=True), _document(strict=False))
VALID_TOML = DOCUMENT.map(toml_document)

# TOML-ish: schema-shaped lines, some broken, and edits of valid documents
_HEADER = st.builds(lambda open_, name, close: f"{open_}{name}{close}",
                    st.sampled_from(["[", "[[", "[ ", "", "[\"", "[site."]),
                    st.one_of(st.sampled_from(sorted(Profile.model_fields)), _TEXT),
                    st.sampled_from(["]", "]]", "", " ]", "] # c", "\"]"]))
_LINE = st.one_of(
    _HEADER,
    st.builds(lambda k, eq, v: f"{k}{eq}{v}",
              st.one_of(st.sampled_from(sorted({k for m in Profile.model_fields.values()
                                                for k in getattr(m.annotation, "model_fields",
                                                                 {})})), _TEXT),
              st.sampled_from([" = ", "=", " ", " == "]),
              st.one_of(_VALUE.map(toml_value), _TEXT)),
    st.sampled_from(["", "# comment", "key = ", "= 1", "a = [1,", 'a = """', "a = '''x'''"]),
    _TEXT)
_LINES = st.lists(_LINE, max_size=10).map("\n".join)


@st.composite
def _edited(draw: st.DrawFn) -> str:
    text = draw(VALID_TOML)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = text[:at] + draw(st.one_of(st.just(""), _TEXT, st.sampled_from(_TRICKY))) + \
            text[at + cut:]
    return text


PROFILE_BYTES = st.one_of(
    VALID_TOML.map(str.encode), VALID_TOML.map(str.encode),
    _LINES.map(str.encode), _edited().map(str.encode),
    st.binary(max_size=100),
    st.builds(lambda a, bad, b: a + bad + b, VALID_TOML.map(str.encode),
              st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80"]), _LINES.map(str.encode)))

# -- the property


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("fuzz-profile")
    (h / "maps").mkdir()
    for name in MAP_FILES:
        (h / name).write_text("")
    return h


def lines_in(data: bytes) -> int:
    """Lines as load() reads the file (universal newlines: CRLF, CR or LF ends one)."""
    return len(re.split(rb"\r\n|\r|\n", data))


def check_error(e: ConfigError, path: Path, data: bytes) -> None:
    require(e.file == str(path), f"ConfigError names {e.file!r}, not {path}: {e}")
    require(str(e).startswith(str(path)), f"the message does not start with the file: {e}")
    if e.line is not None and not 1 <= e.line <= lines_in(data):
        other = re.search("[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]",
                          data.decode("utf-8", "replace"))
        require(False, f"line {e.line} out of range 1..{lines_in(data)}"
                f"{' (the text has line separators other than CR and LF)' if other else ''}: "
                f"{e}")


def check(home: Path, data: bytes) -> None:
    path = home / "postroom.toml"
    path.write_bytes(data)
    try:
        loaded = site_mod.load(home)
    except ConfigError as e:
        check_error(e, path, data)
    else:
        require(isinstance(loaded, site_mod.Site), f"load returned {loaded!r}")
    try:
        bare = site_mod.open_home(home)
    except ProfileError as e:
        raise AssertionError(f"open_home let a ProfileError through: {e}") from e
    except ConfigError as e:
        check_error(e, path, data)
    else:
        require(isinstance(bare, site_mod.SiteHome), f"open_home returned {bare!r}")
        if bare.profile_error is not None:
            check_error(bare.profile_error, path, data)


@corpus_examples("profile", lambda data: {"data": data})
@fuzz_settings(300)
@given(data=PROFILE_BYTES)
def test_load_gives_site_or_config_error(home: Path, data: bytes) -> None:
    TARGET.check(data, lambda: check(home, data))


@pytest.mark.parametrize("data", corpus_params("profile"))
def test_corpus(home: Path, data: bytes) -> None:
    check(home, data)
