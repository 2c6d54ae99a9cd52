"""A list's settings as text: what ``postroom lists set KEY=VALUE`` takes and ``lists show``
prints, validated against the model (``lists.model.ListSettings``) with errors that name
the key and the fix; and the conversion between setting values and store columns."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from dataclasses import fields
from enum import StrEnum
from typing import Any

from postroom.lists.model import AddressRule, ListSettings, RuleAction
from postroom.store import StoreValueError
from postroom.store.lists import check_address

ROW_FIELDS = ("owners", "moderators", "address_rules")  # kept in tables of their own
FIXED = ("name", "domain")


# -- settings as text (postroom lists set / show) ---------------------------------------------

class SettingError(StoreValueError):
    """A KEY=VALUE pair that does not fit the model; the message names the field and fix."""


_HINTS = typing.get_type_hints(ListSettings)
SCALARS = tuple(f for f in fields(ListSettings) if f.name not in (*ROW_FIELDS, *FIXED))
SETTING_NAMES = tuple(f.name for f in fields(ListSettings) if f.name not in FIXED)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_POSITIVE = {"digest_period_days", "held_expiry_days", "digest_size_kb"}
_ONE_LINE_MAX = {"subject_prefix": 64, "description": 1000}
_RULE_SPLIT = re.compile(r",\s*(?=(?:{}):)".format("|".join(a.value for a in RuleAction)))


def from_column(name: str, value: Any) -> Any:
    kind = _HINTS[name]
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return kind(value)
    if kind is bool:
        return bool(value)
    if name == "acceptable_aliases":
        return [line for line in str(value).split("\n") if line]
    return value


def to_column(name: str, value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if name == "acceptable_aliases":
        return "\n".join(value)
    return value


def _parse_one(key: str, text: str) -> Any:
    kind = _HINTS[key]
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        choices = [m.value for m in kind]
        if text.strip().lower() not in choices:
            raise SettingError(f"{key}: {text!r} is not one of {', '.join(choices)}")
        return kind(text.strip().lower())
    if kind is bool:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise SettingError(f"{key}: {text!r} is not a yes/no value "
                           f"(fix: {key}=true or {key}=false)")
    if kind is int:
        try:
            number = int(text.strip().replace("_", ""))
        except ValueError:
            raise SettingError(f"{key}: {text!r} is not a whole number "
                               f"(fix: e.g. {key}={getattr(ListSettings('x', 'y'), key)})"
                               ) from None
        low = 1 if key in _POSITIVE else 0
        if number < low:
            raise SettingError(f"{key}: {number} is less than {low}")
        return number
    if key in ("owners", "moderators"):
        try:
            return sorted({check_address(a, key[:-1]) for a in text.split(",") if a.strip()})
        except StoreValueError as e:
            raise SettingError(f"{key}: {e} (fix: {key}=a@example.org,b@example.org)"
                               ) from None
    if key == "acceptable_aliases":
        return [a.strip() for a in text.split(",") if a.strip()]
    if key == "address_rules":
        return _parse_rules(text)
    if key in _ONE_LINE_MAX:
        limit = _ONE_LINE_MAX[key]
        if "\n" in text or "\r" in text or len(text) > limit:
            raise SettingError(f"{key}: must be one line of at most {limit} characters "
                               f"(fix: e.g. {key}='[staff] ')" if key == "subject_prefix" else
                               f"{key}: must be one line of at most {limit} characters")
    return text


def _parse_rules(text: str) -> list[AddressRule]:
    rules: list[AddressRule] = []
    for part in _RULE_SPLIT.split(text.strip()) if text.strip() else []:
        action, colon, pattern = part.partition(":")
        choices = ", ".join(a.value for a in RuleAction)
        if not colon or action.strip().lower() not in {a.value for a in RuleAction}:
            raise SettingError(f"address_rules: {part!r} is not ACTION:PATTERN with ACTION one "
                               f"of {choices} (fix: address_rules='hold:^.*@example\\.com$,"
                               "accept:boss@example.org')")
        pattern = pattern.strip()
        if pattern.startswith("^"):
            try:
                re.compile(pattern)
            except re.error as e:
                raise SettingError(f"address_rules: {pattern!r} is not a valid regular "
                                   f"expression ({e})") from None
        elif not pattern:
            raise SettingError(f"address_rules: {part!r} has no pattern")
        else:
            pattern = pattern.lower()
        rules.append(AddressRule(pattern, RuleAction(action.strip().lower())))
    return rules


def parse_settings(pairs: Iterable[str]) -> dict[str, Any]:
    """``["posting_policy=open", "max_recipients=20"]`` -> typed values; SettingError (all
    the bad pairs, one a line) if any pair is bad, so nothing is set from a half-good list."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not eq:
            errors.append(f"{pair!r}: write KEY=VALUE (e.g. posting_policy=moderated)")
        elif key in FIXED:
            errors.append(f"{key}: a list's {key} cannot be changed "
                          "(fix: create a new list and move the members with 'members sync')")
        elif key not in SETTING_NAMES:
            near = [n for n in SETTING_NAMES if key in n or n in key]
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            errors.append(f"{key}: no such setting{hint}; the settings are "
                          f"{', '.join(SETTING_NAMES)}")
        else:
            try:
                values[key] = _parse_one(key, text)
            except SettingError as e:
                errors.append(str(e))
    if errors:
        raise SettingError("\n".join(errors))
    return values


def show_value(settings: ListSettings, key: str) -> str:
    """A setting as ``lists set`` would take it back."""
    value = getattr(settings, key)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if key == "address_rules":
        return ",".join(f"{r.action.value}:{r.pattern}" for r in value)
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def settings_json(settings: ListSettings) -> dict[str, Any]:
    """The settings as plain JSON values."""
    out: dict[str, Any] = {"address": settings.address}
    for f in fields(ListSettings):
        value = getattr(settings, f.name)
        if f.name == "address_rules":
            value = [{"pattern": r.pattern, "action": r.action.value} for r in value]
        elif isinstance(value, StrEnum):
            value = value.value
        out[f.name] = value
    return out
