"""The DATA line-length check: the same answer on its fast path (few lines) and its
regex path (very many lines, where splitting would make too many objects)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postroom.smtp.server import _MANY_LINES, has_long_line


@given(st.binary(max_size=60).map(lambda b: bytes(b"ab\r\n"[x % 4] for x in b)),
       st.integers(1, 8))
def test_both_paths_agree(content: bytes, limit: int) -> None:
    expected = max(map(len, content.splitlines()), default=0) > limit
    assert has_long_line(content, limit) is expected
    # the same lines plus many empty ones take the regex path
    assert has_long_line(content + b"\r\n" * _MANY_LINES, limit) is expected


def test_everyday_limits() -> None:
    assert not has_long_line(b"a" * 998 + b"\r\n" + b"b" * 10, 998)
    assert has_long_line(b"x\r\n" + b"a" * 999 + b"\r\n", 998)
    assert has_long_line(b"x\r\n" * _MANY_LINES + b"a" * 999, 998)
