"""postroom.safeio: durable writes, directory fsync, atomic replace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from postroom import safeio


def test_atomic_replace_writes_new_content(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")
    safeio.atomic_replace(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert os.listdir(tmp_path) == ["file"]  # no temporary file left


def test_atomic_replace_creates_missing_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    safeio.atomic_replace(target, b"x", mode=0o640)
    assert target.read_bytes() == b"x"
    assert target.stat().st_mode & 0o777 == 0o640


def test_atomic_replace_failure_leaves_old_content(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError) as info:
        safeio.atomic_replace(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file"]  # the temporary file was removed
    assert info.value.filename is not None and "file" in info.value.filename


def test_atomic_replace_failed_rename_leaves_old_content(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    (target / "inside").write_bytes(b"keep")
    with pytest.raises(OSError):  # a non-empty directory cannot be replaced by a file
        safeio.atomic_replace(target, b"new")
    assert (target / "inside").read_bytes() == b"keep"
    assert sorted(os.listdir(tmp_path)) == ["dir"]


def test_fsync_dir_on_a_real_directory(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"")
    safeio.fsync_dir(tmp_path)
    safeio.fsync_dir(str(tmp_path))


def test_fsync_dir_error_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as info:
        safeio.fsync_dir(missing)
    assert info.value.filename == str(missing)
    assert str(missing) in str(info.value)


def test_fsync_failure_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError) as info:
        safeio.fsync_dir(tmp_path)
    assert info.value.errno == 5
    assert info.value.filename == str(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_write_and_fsync_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        safeio.write_and_fsync(fd, b"hello world", path)
        assert path.read_bytes() == b"hello world"
        safeio.overwrite(fd, b"bye", path)  # shorter: the rest is cut off
        assert path.read_bytes() == b"bye"
    finally:
        os.close(fd)


def test_publish_refuses_an_existing_staged_file(tmp_path: Path) -> None:
    staged, dest = tmp_path / "staged", tmp_path / "dest"
    staged.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        safeio.publish(staged, dest, b"x")
    assert not dest.exists()
