"""Reading ``SITE/postroom.toml``: TOML, then the pydantic profile, then the map files it
names. Every problem is a ConfigError naming the file, the line, the key and the fix; a
problem with the profile itself is a ProfileError, which the commands that need only the
site home (``open_home``) survive.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from postroom.errors import ConfigError, ProfileError
from postroom.site.home import PROFILE_NAME, Site, SiteHome
from postroom.site.profile import Profile


def resolve_home(site: str | os.PathLike[str] | None) -> Path:
    """``--site`` wins, then ``POSTROOM_SITE``, then the current directory."""
    chosen = site or os.environ.get("POSTROOM_SITE") or "."
    return Path(chosen).resolve()


def load(home: str | os.PathLike[str] | None = None) -> Site:
    """Read and validate ``HOME/postroom.toml``; raise ConfigError on any problem."""
    root = resolve_home(home)
    return _site(root, _read(root))


def open_home(home: str | os.PathLike[str] | None = None) -> SiteHome:
    """The site home, for a command that needs no profile: a Site when the profile is good,
    else a bare SiteHome whose ``profile_error`` says what is wrong with it.

    A directory without a profile is no site home: that is a ConfigError, as for load()."""
    root = resolve_home(home)
    text = ""
    try:
        text = _read(root)
        return _site(root, text)
    except ProfileError as e:
        log_file, hostname = _still_readable(text)
        return SiteHome(root, profile_error=e, log_file=log_file, hostname=hostname)


def _read(root: Path) -> str:
    path = root / PROFILE_NAME
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "no site profile here",
                          hint="run 'postroom init DIR' or pass --site DIR / set POSTROOM_SITE"
                          ) from None
    except UnicodeDecodeError as e:
        raise ProfileError(str(path), f"not UTF-8 text (byte {e.start}: {e.reason})",
                           line=e.object[:e.start].count(b"\n") + 1,
                           hint="save the file as UTF-8") from None
    except OSError as e:
        raise ConfigError(str(path), f"cannot read it: {e.strerror}") from None


def _site(root: Path, text: str) -> Site:
    path = root / PROFILE_NAME
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(str(path), f"not valid TOML: {e}", line=_toml_error_line(str(e)),
                           hint="check quoting and brackets on that line") from None
    try:
        profile = Profile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"]]
        raise ProfileError(str(path), _describe(err), line=_line_of(text, err["loc"]),
                           field=".".join(loc), hint=_hint(err, err["loc"])) from None
    site = Site(root, profile)
    _check_files(site, text)
    return site


def _still_readable(text: str) -> tuple[str | None, str | None]:
    """The log file and host name of a broken profile, when its TOML can still be read."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None, None

    def string(table: str, key: str) -> str | None:
        section = data.get(table)
        value = section.get(key) if isinstance(section, dict) else None
        return value if isinstance(value, str) and value else None

    return string("log", "file"), string("site", "hostname")


def _check_files(site: Site, text: str) -> None:
    for key in ("aliases", "forwards", "virtusertable", "mailertable", "local_users"):
        for rel in getattr(site.profile.maps, key):
            try:
                there = site.path(rel).is_file()
            except OSError as e:  # a name too long for the file system, say
                raise ProfileError(str(site.profile_path), f"file {rel[:60]!r}... cannot be "
                                   f"used: {e.strerror}", line=_line_of(text, ("maps", key)),
                                   field=f"maps.{key}", hint="give a shorter path") from None
            if not there:
                raise ProfileError(str(site.profile_path), f"file {rel!r} does not exist",
                                   line=_line_of(text, ("maps", key)), field=f"maps.{key}",
                                   hint=f"create {site.path(rel)} or remove it from the list")


# -- what a validation error says

# pydantic's error type for a value of the wrong type -> what the key takes
_EXPECTED = {
    "int_type": "an integer", "bool_type": "a boolean", "string_type": "a string",
    "float_type": "a number", "list_type": "an array", "model_type": "a table",
    "dict_type": "a table",
}


def _describe(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, not {_toml_kind(err['input'])}"
    return str(err["msg"]).removeprefix("Value error, ")


def _toml_kind(value: Any) -> str:
    """How a TOML value reads to the person who wrote it."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {_quoted(value)}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"{value!r}"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hint(err: Any, loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    names = [str(p) for p in loc]
    keys = [p for p in loc if isinstance(p, str)]
    key = keys[-1] if keys else ""
    if kind == "extra_forbidden":
        known = _known_keys(names[:-1])
        return f"remove it or use one of: {', '.join(known)}" if known else "remove it"
    if kind == "missing" and len(loc) == 1:  # the top level holds tables only
        return f"add a [{key}] table"
    if kind == "missing":
        return f"add '{key} = ...' to the {_table_name(loc[:-1])}"
    value = err.get("input")
    if kind == "int_type" and isinstance(value, str) and value.strip().isdigit():
        return f"write {key} = {value.strip()}, without quotes"
    if kind == "bool_type":
        return f"write {key} = true or {key} = false" + (
            ", without quotes" if isinstance(value, str) else "")
    if kind == "string_type" and isinstance(loc[-1], int):
        return "put each item of the array in quotes"
    if kind == "string_type":
        return f'write {key} = "...", in quotes'
    if kind == "list_type" and isinstance(value, str):
        return f"write {key} = [{_quoted(value)}]"
    if kind in ("model_type", "dict_type"):
        return f"write it as a {_table_name(loc)}"
    if kind in _EXPECTED:
        return f"give {key} {_EXPECTED[kind]}"
    ctx = err.get("ctx") or {}
    if kind == "greater_than_equal":
        return f"give {'.'.join(names)} a value of at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"give {'.'.join(names)} a value of at most {ctx.get('le')}"
    return f"give {'.'.join(names)} a valid value"


def _table_name(path: tuple[Any, ...]) -> str:
    """``("listeners", 1)`` -> ``[[listeners]] table number 2``."""
    name = ".".join(p for p in path if isinstance(p, str))
    if path and isinstance(path[-1], int):
        return f"[[{name}]] table number {path[-1] + 1}"
    return f"[{name}] table"


def _known_keys(section: list[str]) -> list[str]:
    model: Any = Profile
    for part in section:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = args[0] if args and isinstance(args[0], type) else ann
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return sorted(model.model_fields)


# -- where in the file

def _toml_error_line(message: str) -> int | None:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None


_HEADER = re.compile(r"^\[(\[?)\s*([^\]]+?)\s*\]\]?")


def _line_of(text: str, loc: tuple[Any, ...] | list[Any]) -> int | None:
    """Best-effort line of a key path in TOML text: the key's line, else the header of the
    table it belongs in.

    ``loc`` is pydantic's path: table names, then the index of an ``[[array]]`` table, then
    the key, then the index of an item of an array value: ``("listeners", 1, "port")``,
    ``("delivery", "relays", 0, "host")``, ``("site", "domains", 2)``."""
    keys: dict[tuple[str, int | None, str], int] = {}   # (table, occurrence, key) -> line
    headers: dict[tuple[str, int | None], int] = {}     # (table, occurrence) -> line
    count: dict[str, int] = {}
    table, occurrence = "", None
    # TOML lines end at LF only (splitlines would also break at U+2028, form feed, ...)
    for no, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        m = _HEADER.match(line)
        if m:
            table = m.group(2)
            occurrence = None
            if m.group(1):  # [[table]]: one more entry of an array of tables
                occurrence = count[table] = count.get(table, -1) + 1
            headers.setdefault((table, occurrence), no)
            continue
        if "=" in line and not line.startswith("#"):
            key = line.split("=", 1)[0].strip().strip("\"'")
            keys.setdefault((table, occurrence, key), no)
    for cut in range(len(loc) - 1, -1, -1):  # the longest table path that holds the key
        key = loc[cut]
        if isinstance(key, str):
            found = keys.get((*_table_of(loc[:cut]), key))
            if found is not None:
                return found
    for cut in range(len(loc), 0, -1):
        found = headers.get(_table_of(loc[:cut]))
        if found is not None:
            return found
    return None


def _table_of(path: tuple[Any, ...] | list[Any]) -> tuple[str, int | None]:
    """``("delivery", "relays", 0)`` -> ``("delivery.relays", 0)``."""
    names = [p for p in path if isinstance(p, str)]
    index = path[-1] if path and isinstance(path[-1], int) else None
    return ".".join(names), index
