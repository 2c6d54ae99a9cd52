"""Telling systemd how ``serve`` is (``Type=notify``): ``READY=1`` once every service has
started, ``WATCHDOG=1`` while the event loop turns, ``READY=1`` with a status after a
reload, ``STOPPING=1`` when it drains. The protocol is one datagram per message on the
Unix socket ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace); without
that variable nothing is sent, so ``serve`` runs the same outside systemd.

The watchdog interval is ``$WATCHDOG_USEC`` (set by ``WatchdogSec=``); we ping at half of
it, from the master's event loop: a loop that hangs stops the pings, and systemd
restarts the service.
"""

from __future__ import annotations

import asyncio
import os
import socket

from postroom.runtime import Runtime


def notify(message: str) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``); False when not under systemd or it failed."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.setblocking(False)  # a reader that stopped reading must never stall serve
            s.connect(address)
            s.send(message.encode())
    except OSError:  # BlockingIOError too: that message is dropped, the next one follows
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between pings (half of ``$WATCHDOG_USEC``), None if no watchdog is asked
    for this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class SystemdNotify:
    """The last service ``serve`` starts: when it starts, every other one has."""

    name = "systemd"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        notify(f"READY=1\nSTATUS=serving, pid {os.getpid()}\nMAINPID={os.getpid()}")
        every = watchdog_interval()
        if every is not None:
            self._task = asyncio.ensure_future(self._ping(every))

    async def _ping(self, every: float) -> None:
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(every)

    async def stop(self) -> None:
        notify("STOPPING=1\nSTATUS=draining")
        if self._task is not None:
            self._task.cancel()

    def reload(self, old: Runtime, new: Runtime) -> None:
        notify("READY=1\nSTATUS=reloaded")
