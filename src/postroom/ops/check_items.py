"""What ``postroom check`` reports: one ``Item`` per thing looked at, pass, warn or fail,
with what was found and, when it is not a pass, the fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    status: str     # PASS | WARN | FAIL
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
