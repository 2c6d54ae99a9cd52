"""The directory fsync a delete after delivery asks for (``DirSync.sync_later``): shared
by the deletes that come close together, and left out when another fsync of the directory
began after the delete."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from postroom.queue import dirsync
from postroom.queue.dirsync import DirSync


class Fsyncs:
    """fsync_dir, counted; ``hold`` keeps the next call waiting until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, path: str | Path) -> None:
        self.calls += 1
        if self.hold:
            self.hold = False
            self.entered.set()
            assert self.release.wait(10)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Fsyncs:
    counted = Fsyncs()
    monkeypatch.setattr(dirsync, "fsync_dir", counted)
    return counted


def test_deletes_close_together_share_one_fsync(tmp_path: Path, fsyncs: Fsyncs) -> None:
    sync = DirSync(tmp_path)
    for _ in range(50):
        sync.sync_later()
    sync.close()  # waits for the fsync asked for
    assert fsyncs.calls == 1


def test_an_fsync_begun_after_the_delete_covers_it(tmp_path: Path, fsyncs: Fsyncs) -> None:
    sync = DirSync(tmp_path)
    sync.sync_later()
    sync.flush()  # a batch of puts fsyncs the directory within LATER_DELAY
    sync.close()
    assert fsyncs.calls == 1


def test_an_fsync_begun_before_the_delete_does_not(tmp_path: Path, fsyncs: Fsyncs) -> None:
    sync = DirSync(tmp_path)
    fsyncs.hold = True
    earlier = threading.Thread(target=sync.flush)
    earlier.start()
    assert fsyncs.entered.wait(10)
    sync.sync_later()  # the delete comes while that fsync is under way
    fsyncs.release.set()
    earlier.join()
    sync.close()
    assert fsyncs.calls == 2


def test_a_delete_when_nothing_else_happens_is_fsynced(tmp_path: Path,
                                                        fsyncs: Fsyncs) -> None:
    sync = DirSync(tmp_path)
    sync.sync_later()
    sync.close()
    sync.sync_later()  # after close: a new background thread
    sync.close()
    assert fsyncs.calls == 2
