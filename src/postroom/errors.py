"""Errors postroom raises on purpose.

    PostroomError
     +-- ConfigError      profile problem: file, line, field and the fix
     |    +-- ProfileError    postroom.toml itself is broken; the site home is still usable
     +-- MapError         map source problem: file and line
     +-- AddressError     an address that cannot be parsed or is a relay trick
     +-- QueueError       the spool could not take or change a message
     +-- DeliveryError    a courier failed (code, enhanced status, text)
          +-- TemporaryFailure   try again later (4xx, connection trouble, unknown causes)
          +-- PermanentFailure   give up and bounce (5xx)

Exit codes follow sysexits.h so shell scripts can tell the cases apart.
"""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78


class PostroomError(Exception):
    exit_code = EX_SOFTWARE


class ConfigError(PostroomError):
    """A profile problem; the message names where it is and how to fix it."""

    exit_code = EX_CONFIG

    def __init__(self, file: str, message: str, *, line: int | None = None,
                 field: str | None = None, hint: str | None = None) -> None:
        self.file, self.line, self.field, self.hint = file, line, field, hint
        where = f"{file}:{line}" if line else file
        text = f"{where}: {field + ': ' if field else ''}{message}"
        if hint:
            text += f" (fix: {hint})"
        super().__init__(text)


class ProfileError(ConfigError):
    """``SITE/postroom.toml`` is there but cannot be used. A running server keeps running
    the last good profile; the queue, quiesce, resume and status commands still work."""


class MapError(PostroomError):
    """A bad line in a map source file."""

    exit_code = EX_CONFIG

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file, self.line = file, line
        super().__init__(f"{file}:{line}: {message}")


class AddressError(PostroomError, ValueError):
    """``reason`` is the short text for replies; str() adds the address."""

    exit_code = EX_DATAERR

    def __init__(self, address: str, reason: str) -> None:
        self.address, self.reason = address, reason
        super().__init__(f"{address}: {reason}" if address else reason)


class QueueError(PostroomError):
    exit_code = EX_CANTCREAT


class DeliveryError(PostroomError):
    """A courier's failure with the SMTP-style reply that describes it."""

    permanent = False

    def __init__(self, code: int, enhanced: str, text: str, *, remote: str | None = None) -> None:
        self.code, self.enhanced, self.text, self.remote = code, enhanced, text, remote
        super().__init__(f"{code} {enhanced} {text}")


class TemporaryFailure(DeliveryError):
    pass


class PermanentFailure(DeliveryError):
    permanent = True
