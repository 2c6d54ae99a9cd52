"""Queue IDs: format, order, uniqueness within a process (across processes: see
test_spool_processes.py)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from postroom.queue import ids


def test_format() -> None:
    qid = ids.new_id()
    assert len(qid) == ids.LENGTH == 13
    assert set(qid) <= set(ids.ALPHABET)
    assert ids.is_valid(qid)
    assert qid.endswith(ids._encode(os.getpid() % 62**4, 4))


def test_time_is_encoded() -> None:
    before = time.time()
    qid = ids.new_id()
    after = time.time()
    assert before - 0.001 <= ids.timestamp(qid) <= after + 0.001


def test_sorted_ids_are_in_order_of_making() -> None:
    made = [ids.new_id() for _ in range(20_000)]  # far more than one per microsecond
    assert sorted(made) == made
    assert len(set(made)) == len(made)


def test_unique_across_threads() -> None:
    found: list[list[str]] = [[] for _ in range(8)]

    def make(n: int) -> None:
        found[n] = [ids.new_id() for _ in range(5000)]

    threads = [threading.Thread(target=make, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [q for chunk in found for q in chunk]
    assert len(set(every)) == 40_000


def test_alphabet_order_is_string_order() -> None:
    assert "".join(sorted(ids.ALPHABET)) == ids.ALPHABET
    assert ids._decode(ids._encode(123456789, 9)) == 123456789
    with pytest.raises(ValueError):
        ids._encode(62**4, 4)


@pytest.mark.parametrize("bad", ["", "abc", "../../etc/passwd", "a/bcdefghij", "abc.def.ghi",
                                 "x" * 33, "8DtEjreMK02J\n", "8DtEjreMK 02JV", "ÄDtEjreMK02JV"])
def test_invalid(bad: str) -> None:
    assert not ids.is_valid(bad)


def test_timestamp_refuses_other_strings() -> None:
    with pytest.raises(ValueError):
        ids.timestamp("not-an-id")
