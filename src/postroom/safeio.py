"""Durable file I/O: the few ways postroom makes a write survive a crash.

A write is durable when the file's data is fsynced *and* the directory entry that names it
is: after a crash, a file that was fsynced but whose directory was not may simply not be
there (ext4 without a journal, which the spool runs on, loses such entries; journalled file
systems mostly do not, but nothing promises it). So every "it is on disk" in postroom is
file fsync, rename (or create), then fsync of the directory holding the new name, and all of
them go through here: the spool (``postroom.queue``), the Maildir and file couriers and the
queue import (``postroom.ops.salvage``).

Every OSError raised here names the path it is about (``filename``), also for a failed
fsync, where the operating system names none.

Ground floor: imports nothing from postroom.
"""

from __future__ import annotations

import os
import threading
from contextlib import suppress

__all__ = ["atomic_replace", "fsync_dir", "fsync_fd", "overwrite", "publish", "rewrite",
           "write_all", "write_and_fsync"]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _named(e: OSError, path: str | os.PathLike[str]) -> OSError:
    """``e`` with ``path`` as its filename (the same error, if it already names one)."""
    if e.filename is not None:
        return e
    return type(e)(e.errno, e.strerror or str(e), os.fspath(path))


def fsync_fd(fd: int, path: str | os.PathLike[str]) -> None:
    """fsync an open file; a failure names ``path``."""
    try:
        os.fsync(fd)
    except OSError as e:
        raise _named(e, path) from None


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` at the file position (short writes are continued)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_and_fsync(fd: int, data: bytes, path: str | os.PathLike[str]) -> None:
    """Write all of ``data`` at the file position, then fsync the file."""
    try:
        write_all(fd, data)
    except OSError as e:
        raise _named(e, path) from None
    fsync_fd(fd, path)


def rewrite(fd: int, data: bytes, path: str | os.PathLike[str]) -> None:
    """Make the open file hold exactly ``data`` (it may be a reused file with older, longer
    contents: written from offset 0, then cut to length); not yet durable."""
    try:
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            offset += os.pwrite(fd, view[offset:], offset)
        if os.fstat(fd).st_size != len(data):
            os.ftruncate(fd, len(data))
    except OSError as e:
        raise _named(e, path) from None


def overwrite(fd: int, data: bytes, path: str | os.PathLike[str]) -> None:
    """``rewrite``, then fsync the file."""
    rewrite(fd, data, path)
    fsync_fd(fd, path)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory, so that the names created, renamed or removed in it are durable.

    Opened for each call, not kept open: a directory replaced meanwhile is still synced."""
    fd = os.open(path, DIR_FLAGS)
    try:
        fsync_fd(fd, path)
    finally:
        os.close(fd)


def publish(staged: str | os.PathLike[str], dest: str | os.PathLike[str], data: bytes, *,
            mode: int = 0o600) -> None:
    """Create ``staged`` (exclusively: FileExistsError if it exists), write ``data``, fsync,
    rename it to ``dest`` (replacing a file there) and fsync ``dest``'s directory.

    On a failure before the rename ``staged`` is removed and ``dest`` is untouched. After
    the rename only the directory fsync can fail: ``dest`` then has the new contents, which
    may not survive a crash (the caller's error says so)."""
    fd = os.open(staged, NEW_FILE_FLAGS, mode)
    try:
        try:
            write_and_fsync(fd, data, staged)
        finally:
            os.close(fd)
        os.rename(staged, dest)
    except BaseException:
        with suppress(OSError):
            os.unlink(staged)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(dest)))


def atomic_replace(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Replace the file at ``path`` with ``data`` atomically and durably: a temporary file
    next to it, written and fsynced, renamed over it, the directory fsynced. A reader sees
    the old contents or the new, never a mix; on a failure before the rename the old file is
    left as it was."""
    path = os.fspath(path)
    head, name = os.path.split(path)
    staged = os.path.join(head, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with suppress(FileNotFoundError):  # a leftover of a crashed writer with our PID
        os.unlink(staged)
    publish(staged, path, data, mode=mode)
