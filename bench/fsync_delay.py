"""A slower disk for both servers alike: an LD_PRELOAD library that adds a fixed delay to
every ``fsync`` and ``fdatasync`` after the real call, and counts the calls.

This guest kernel has no device-mapper (no ``dm-delay``), so the delay is added in the C
library's entry points instead. The library is built from the source below with the
machine's ``cc`` into a file named by the source's hash, once. Every process that loads it
adds to one shared counter (an 8-byte file mapped by each process at load time, before
Postfix's daemons chroot), so a run can show that each server really paid the delay, and
how many fsyncs per message it made.

The delay sleeps: the CPU is free meanwhile, as it is while a real disk works. Unlike a
real disk, concurrent fsyncs do not queue behind each other; both servers get the same.

    env = fsync_delay.environment(1.0, counter)   # 1 ms per fsync
    fsync_delay.reset(counter); ...; fsync_delay.count(counter)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static long delay_ns;
static volatile uint64_t *counter;

__attribute__((constructor)) static void init(void) {
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    const char *us = getenv("FSYNC_DELAY_US");
    delay_ns = us ? atol(us) * 1000L : 0;
    const char *path = getenv("FSYNC_DELAY_COUNTER");
    if (path) {
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            void *p = mmap(NULL, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED) counter = (volatile uint64_t *)p;
            close(fd);
        }
    }
}

static void paid(void) {
    if (counter) __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
    if (delay_ns > 0) {
        struct timespec t = {delay_ns / 1000000000L, delay_ns % 1000000000L};
        while (nanosleep(&t, &t) != 0) {}
    }
}

int fsync(int fd) { int r = real_fsync(fd); paid(); return r; }
int fdatasync(int fd) { int r = real_fdatasync(fd); paid(); return r; }
"""

VARS = ("LD_PRELOAD", "FSYNC_DELAY_US", "FSYNC_DELAY_COUNTER")


def library() -> Path:
    """The built library (built now if this source has not been built before)."""
    digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:12]
    lib = Path(tempfile.gettempdir()) / f"postroom-bench-fsync-delay-{digest}.so"
    if not lib.exists():
        src = lib.with_suffix(".c")
        src.write_text(SOURCE)
        tmp = lib.with_suffix(f".{os.getpid()}.so")
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(tmp), str(src), "-ldl"],
                       check=True, capture_output=True, timeout=120)
        os.chmod(tmp, 0o755)  # Postfix's daemons load it as the postfix user
        tmp.replace(lib)
    return lib


def new_counter() -> Path:
    """An 8-byte counter file that every process of the servers can update."""
    fd, name = tempfile.mkstemp(prefix="postroom-bench-fsyncs-")
    os.write(fd, bytes(8))
    os.close(fd)
    os.chmod(name, 0o666)  # Postfix's daemons run as postfix
    return Path(name)


def environment(delay_ms: float, counter: Path) -> dict[str, str]:
    """The variables that make a process (and its children) pay ``delay_ms`` per fsync."""
    return {"LD_PRELOAD": str(library()), "FSYNC_DELAY_US": str(round(delay_ms * 1000)),
            "FSYNC_DELAY_COUNTER": str(counter)}


def reset(counter: Path) -> None:
    with open(counter, "r+b") as f:
        f.write(bytes(8))


def count(counter: Path) -> int:
    return int.from_bytes(counter.read_bytes()[:8], "little")
