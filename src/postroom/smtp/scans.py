"""What aiosmtpd scans a protocol and a handler for on every connection (its ``smtp_*``
verbs, ``handle_*`` hooks and ``auth_*`` mechanisms), found once per class instead, and
the tables a session looks them up in. ``postroom.smtp.adapter`` builds its sessions
on these: aiosmtpd finds them with ``inspect.getmembers`` and ``dir()`` per connection
(about 0.1 ms of CPU) and keeps dicts of bound methods per session (most of an idle
connection's memory). So a hook or a mechanism must be a method of the class; one set
on an instance is not seen."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aiosmtpd.smtp import _AuthMechAttr

_names: dict[tuple[type, str], tuple[str, ...]] = {}


def names_of(cls: type, prefix: str) -> tuple[str, ...]:
    """The attribute names of ``cls`` that start with ``prefix``, sorted as ``dir()`` is."""
    key = (cls, prefix)
    found = _names.get(key)
    if found is None:
        found = _names[key] = tuple(n for n in dir(cls) if n.startswith(prefix))
    return found


_ehlo_checked: set[type] = set()


class BoundMethods(Mapping[str, Any]):
    """``{name: obj.<prefix>name}`` for the methods of ``obj``'s class, bound when looked
    up: what aiosmtpd keeps as a dict of bound methods in every session."""

    __slots__ = ("_names", "_obj", "_prefix")

    def __init__(self, obj: object, prefix: str) -> None:
        self._obj, self._prefix = obj, prefix
        self._names = verbs_of(type(obj), prefix)

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        return getattr(self._obj, self._prefix + name)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


_verbs: dict[tuple[type, str], frozenset[str]] = {}


def verbs_of(cls: type, prefix: str) -> frozenset[str]:
    """The names after ``prefix`` of ``cls``'s ``prefix*`` attributes."""
    key = (cls, prefix)
    found = _verbs.get(key)
    if found is None:
        found = _verbs[key] = frozenset(n[len(prefix):] for n in names_of(cls, prefix))
    return found


_mechanisms: dict[tuple[type, type, tuple[str, ...]], dict[str, _AuthMechAttr]] = {}


def mechanisms_of(protocol: type, handler: type,
                  exclude: tuple[str, ...]) -> dict[str, _AuthMechAttr]:
    """aiosmtpd's table of AUTH mechanisms, with the functions of the classes (call one
    with the protocol, or the handler when it is not built in, as ``self``). Shared by
    every session: do not change it."""
    key = (protocol, handler, exclude)
    found = _mechanisms.get(key)
    if found is None:
        found = {}
        for cls in (protocol, handler):
            for attr in names_of(cls, "auth_"):
                method = getattr(cls, attr)
                found[_mechanism_name(attr, method)] = _AuthMechAttr(method,
                                                                     cls is protocol)
        for m in exclude:
            found.pop(m, None)
        _mechanisms[key] = found
    return found


def check_ehlo_hook(cls: type, hook: Callable[..., Any]) -> None:
    """A handler's ``handle_EHLO`` must take (server, session, envelope, hostname,
    responses); checked once per handler class."""
    if cls in _ehlo_checked:
        return
    if len(inspect.signature(hook).parameters) != 5:
        raise TypeError(f"{cls.__qualname__}.handle_EHLO must take (server, session, "
                        "envelope, hostname, responses): aiosmtpd's 4-argument form is "
                        "not supported")
    _ehlo_checked.add(cls)


def _mechanism_name(attr: str, method: Any) -> str:
    # aiosmtpd's rule: an @auth_mechanism name, else auth_X__Y -> "X-Y"
    return getattr(method, "__auth_mechanism_name__",
                   attr.replace("auth_", "").replace("__", "-"))
