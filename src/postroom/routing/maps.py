"""Readers for sendmail's map source formats.

aliases (also the per-user forwarding map, sendmail's ``aliases-staffmail``)::

    # comment
    name: target, target,
        continued target          (a line starting with white space continues the entry)
    sys-announce: "|/var/mailman/mail/mailman post sys-announce"
    log: /var/log/mail-copy        (append to a file)
    staff: :include:lists/staff     (one target per line, relative to the site home)
    neilb: \\neilb, neilb@elsewhere   (backslash: deliver locally, no further aliasing)

virtusertable::

    user@domain   target           (an address, or a local name)
    @domain       %1@elsewhere     (catch-all; %1 is the local part, %2 the +detail)
    @domain       error:nouser No such user
    bob@domain    error:5.1.1:550 Bob has left

mailertable::

    domain        esmtp:[relay.host]     (brackets: no MX lookup)
    .domain       relay:relay.host       (leading dot: every subdomain)

local users: one name per line.

Every reader raises MapError(file, line, message) for a line it cannot read, and nothing
is half-loaded: a reader builds a new dictionary and returns it only when the file is good.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from postroom.errors import MapError


@dataclass(slots=True)
class Map:
    """One source file: key -> (value, line). Values are a tuple of targets or a string."""

    file: str
    entries: dict[str, tuple[object, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # aliases formats: every :include: target of the entries kept, with its line, in order
    includes: list[tuple[str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries


def _logical_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Join continuation lines; skip blanks and comments. Yields (first line no, text).

    A generator, not a list: a reader raises at the first bad line of the file, whichever
    of the two finds it."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MapError(str(path), 0, f"cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad_line = data[: e.start].count(b"\n") + 1
        raise MapError(str(path), bad_line, "not UTF-8; convert the file with iconv") from None
    lines = text.split("\n")
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    start = 0
    pending: str | None = None  # the logical line so far
    for no, line in enumerate(lines, 1):
        first = line[:1]
        if first == " " or first == "\t":
            stripped = line.strip()
            if not stripped or stripped[0] == "#":
                continue
            if pending is None:
                raise MapError(str(path), no, "continuation line with nothing to continue; "
                               "remove the leading white space")
            pending = f"{pending} {stripped}"
            continue
        if pending is not None:
            yield start, pending
            pending = None
        stripped = line.strip()
        if not stripped or stripped[0] == "#":
            continue
        start, pending = no, stripped
    if pending is not None:
        yield start, pending


def split_targets(text: str) -> list[str]:
    """Split ``a, "|prog x, y", b`` at commas outside double quotes."""
    if '"' not in text:
        return [t.strip() for t in text.split(",") if t.strip()]
    out: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\":
            buf.append(ch)
            escaped = True
        elif ch == '"':
            buf.append(ch)
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    if quoted:
        raise ValueError("unbalanced double quote")
    out.append("".join(buf).strip())
    return [t for t in out if t]


INCLUDE = ":include:"


def _check_target(target: str) -> str | None:
    if target.startswith(INCLUDE) and not target[len(INCLUDE):].strip():
        return ":include: needs a file name"
    if target.startswith('"') and not target.endswith('"'):
        return f"unbalanced double quote in {target!r}"
    return None


def read_aliases(path: Path, *, fold_case: bool = True) -> Map:
    """Read an aliases-format file (aliases, forwarding map, :include: lists excluded)."""
    result = Map(str(path))
    entries = result.entries
    includes = result.includes
    for no, text in _logical_lines(path):
        if text[0] == '"':
            end = text.find('"', 1)
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise MapError(str(path), no, "quoted name must be followed by ':'")
            name, rest = text[1:end], text[end + 2 :]
            if not name:
                raise MapError(str(path), no, "empty alias name")
        else:
            name, colon, rest = text.partition(":")
            if not colon:
                raise MapError(str(path), no, "missing ':' after the alias name; "
                               "write 'name: target, target'")
            name = name.strip()
            # (a name of letters and digits has no white space: the split is for the rest)
            if not name or (not name.isalnum() and len(name.split()) != 1):
                raise MapError(str(path), no, f"bad alias name {name!r}; names have no spaces "
                               "unless quoted")
        if '"' in rest:
            try:
                targets = split_targets(rest)
            except ValueError as e:
                raise MapError(str(path), no, f"{e}; close the quote") from None
        else:  # split_targets without quotes, inline: most lines of a big map
            targets = [t.strip() for t in rest.split(",")]
            if "" in targets:
                targets = [t for t in targets if t]
        if not targets:
            raise MapError(str(path), no, f"alias {name!r} has no targets")
        if '"' in rest or INCLUDE in rest:  # the only targets _check_target refuses
            for t in targets:
                problem = _check_target(t)
                if problem:
                    raise MapError(str(path), no, problem)
        key = name.lower() if fold_case else name
        if key in entries:
            result.warnings.append(f"{path}:{no}: duplicate alias {name!r} ignored "
                                   f"(first at line {entries[key][1]})")
            continue
        entries[key] = (tuple(targets), no)
        if INCLUDE in rest:
            includes.extend((t, no) for t in targets if t.startswith(INCLUDE))
    return result


def read_include(path: Path) -> Map:
    """An :include: file: one or more targets per line, comma separated."""
    result = Map(str(path))
    targets: list[str] = []
    for no, text in _logical_lines(path):
        try:
            line_targets = split_targets(text)
        except ValueError as e:
            raise MapError(str(path), no, f"{e}; close the quote") from None
        for t in line_targets:
            problem = _check_target(t)
            if problem:
                raise MapError(str(path), no, problem)
        targets.extend(line_targets)
        for t in line_targets:
            result.entries.setdefault(t, (t, no))
    result.entries[""] = (tuple(targets), 1)
    return result


def read_virtusertable(path: Path, *, fold_case: bool = True) -> Map:
    result = Map(str(path))
    entries = result.entries
    for no, text in _logical_lines(path):
        parts = text.split(None, 1)
        if len(parts) != 2:
            raise MapError(str(path), no, "need 'address target' separated by white space")
        key, value = parts[0], parts[1].strip()
        local, at, domain = key.rpartition("@")
        if not at or not domain:
            raise MapError(str(path), no, f"key {key!r} must be user@domain or @domain")
        if value.startswith("error:"):
            _parse_error(value, str(path), no)
        elif " " in value:
            raise MapError(str(path), no, f"target {value!r} has spaces; only error: "
                           "targets carry text")
        key = f"{local.lower() if fold_case else local}@{domain.lower()}"
        if key in entries:
            result.warnings.append(f"{path}:{no}: duplicate key {key!r} ignored")
            continue
        entries[key] = (value, no)
    return result


def read_mailertable(path: Path) -> Map:
    result = Map(str(path))
    for no, text in _logical_lines(path):
        parts = text.split(None, 1)
        if len(parts) != 2:
            raise MapError(str(path), no, "need 'domain mailer:host' separated by white space")
        key, value = parts[0].lower(), parts[1].strip()
        mailer, colon, host = value.partition(":")
        if not colon or mailer not in MAILERTABLE_MAILERS:
            raise MapError(str(path), no, f"target {value!r} must be one of "
                           f"{', '.join(sorted(MAILERTABLE_MAILERS))} followed by ':host'")
        if mailer == "error":
            _parse_error(value, str(path), no)
        elif "[" in host or "]" in host:  # [name] or [name]:port, nothing else
            inner, close, port = host.removeprefix("[").partition("]")
            if (not host.startswith("[") or not close or not inner or "[" in inner
                    or (port and not (port.startswith(":") and port[1:].isdigit()))):
                raise MapError(str(path), no, f"target {value!r}: brackets must balance; write "
                               f"{mailer}:[host] or {mailer}:[host]:port")
        result.entries.setdefault(key, (value, no))
    return result


def read_names(path: Path, *, fold_case: bool = True) -> Map:
    result = Map(str(path))
    for no, text in _logical_lines(path):
        name = text.split("#", 1)[0].strip()
        if not name or any(c.isspace() or c in ",:@" for c in name):
            raise MapError(str(path), no, f"bad user name {name!r}: one plain name per line")
        result.entries.setdefault(name.lower() if fold_case else name, (name, no))
    return result


MAILERTABLE_MAILERS = frozenset({"esmtp", "smtp", "smtp8", "dsmtp", "relay", "error", "local"})


@dataclass(frozen=True, slots=True)
class ErrorTarget:
    code: int
    status: str
    text: str


def _parse_error(value: str, file: str, line: int) -> ErrorTarget:
    try:
        return parse_error(value)
    except ValueError as e:
        raise MapError(file, line, str(e)) from None


def parse_error(value: str) -> ErrorTarget:
    """``error:nouser text``, ``error:5.1.1:550 text``, ``error:550 text``."""
    body = value[len("error:"):]
    head, _, text = body.partition(" ")
    text = text.strip()
    if head.lower() == "nouser":
        return ErrorTarget(550, "5.1.1", text or "No such user")
    fields = head.split(":")
    if len(fields) == 2 and _is_status(fields[0]) and fields[1].isdigit():
        code, status = int(fields[1]), fields[0]
    elif len(fields) == 1 and fields[0].isdigit():
        code = int(fields[0])
        status = f"{str(code)[0]}.0.0"
    elif len(fields) == 1 and _is_status(fields[0]):
        status = fields[0]
        code = 550 if status.startswith("5") else 451
    else:
        raise ValueError(f"cannot read {value!r}; write error:nouser TEXT or "
                         "error:5.1.1:550 TEXT")
    if not (400 <= code < 600) or status[0] != str(code)[0]:
        raise ValueError(f"{value!r}: code {code} and status {status} disagree; use 4xx with 4.x.x "
                         "or 5xx with 5.x.x")
    return ErrorTarget(code, status, text or "Mail refused")


def _is_status(s: str) -> bool:
    parts = s.split(".")
    return len(parts) == 3 and all(p.isdigit() for p in parts) and parts[0] in ("4", "5")
