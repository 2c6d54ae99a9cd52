"""The password policy of ``postroom users add`` and ``postroom users passwd``.

A password is refused (``WeakPassword``, exit 65) when it is

- shorter than ``MIN_LENGTH`` (12) characters;
- one of the common passwords in ``common-passwords.txt`` (about a thousand, shipped
  next to this module), compared without regard to case, also with the digits and
  punctuation at either end taken off (``Dragon1234!!`` counts as ``dragon``);
- the login name or the local part of one of the user's sender addresses (``alice`` for
  ``alice@inf.example.ac.uk``), again also with digits and punctuation at the ends off;
- a run along the keyboard or the alphabet (``qwertyuiopas``, ``abcdefghijkl``), or a
  short piece repeated (``abcabcabcabc``, ``monkeymonkey``).

The messages never repeat the password. The rules are the NIST SP 800-63B ones (length,
a list of known-bad passwords, nothing derived from the account name) without
composition rules: a few unrelated words make a good password.

The store's own functions (``add_user``, ``set_password``) do not apply the policy; the
commands do, so a test or a migration script can still set any password.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

from postroom.store import StoreValueError

__all__ = ["MIN_LENGTH", "WeakPassword", "check_strength", "common_passwords"]

MIN_LENGTH = 12
COMMON_FILE = "common-passwords.txt"
_ENDS = string.digits + string.punctuation + " "
FIX = "a few unrelated words make a long password that is easy to remember"

# keyboard rows and columns and the alphabet; a password inside one (either way round) is
# refused
_WALKS = (
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
    "qwertyuiopasdfghjklzxcvbnm",
    "qwertzuiopasdfghjklyxcvbnm",
    "azertyuiopqsdfghjklmwxcvbn",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "qazwsxedcrfvtgbyhnujmikolp",
    "zaq12wsxcde34rfvbgt56yhnmju78ik,.lo90p;/",
    "1q2w3e4r5t6y7u8i9o0p",
    "q1w2e3r4t5y6u7i8o9p0",
    "1a2b3c4d5e6f7g8h9i0j",
    "!@#$%^&*()_+",
)


class WeakPassword(StoreValueError):
    """A password the policy refuses; the message says why and how to pick a better one."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"password refused: {reason} (fix: {FIX})")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, case-folded."""
    text = resources.files("postroom.store").joinpath(COMMON_FILE).read_text("utf-8")
    return frozenset(line.strip().casefold() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def check_strength(password: str, *, login: str, addresses: Iterable[str] = (),
                   min_length: int = MIN_LENGTH) -> None:
    """Raise WeakPassword if the policy refuses ``password`` for ``login``, whose sender
    addresses are ``addresses``."""
    if len(password) < min_length:
        raise WeakPassword(f"it is {len(password)} characters long, and needs at least "
                           f"{min_length}")
    folded = password.casefold()
    forms = {folded, folded.strip(_ENDS)} - {""}
    common = common_passwords()
    if folded in common:
        raise WeakPassword("it is one of the most common passwords, which are tried first")
    if forms & common:
        raise WeakPassword("it is one of the most common passwords with digits or "
                           "punctuation added, which are tried early")
    names = {login.casefold(): "the login name"}
    for address in addresses:
        local = address.rpartition("@")[0].casefold() if "@" in address else ""
        if local:
            names.setdefault(local, f"the local part of the sender address {address}")
    for name, what in names.items():
        if name == folded:
            raise WeakPassword(f"it is {what}")
        if name in forms:
            raise WeakPassword(f"it is {what} with digits or punctuation added")
    if any(folded in walk or folded in walk[::-1] for walk in _WALKS):
        raise WeakPassword("it is a run along the keyboard or the alphabet")
    unit = _repeated_unit(folded)
    if unit is not None and (len(unit) <= 4 or unit.strip(_ENDS) in common
                             or unit.strip(_ENDS) in names):
        raise WeakPassword("it is a short piece repeated")


def _repeated_unit(text: str) -> str | None:
    """The shortest piece ``text`` is two or more copies of, or None."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return None
