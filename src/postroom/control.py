"""The control channel: how commands talk to a running ``postroom serve``.

One Unix socket per site home, in the abstract namespace (no path-length limit, nothing to
clean up after a crash), named after the real path of the site's ``state/`` directory.
Only the server's own user and root may use it (checked with ``SO_PEERCRED``). A request
is one JSON line ``{"cmd": NAME, "args": [...]}``; the answer is one JSON line, with
``"ok"`` true or false and whatever the command reports.

    reload           re-read profile, maps and lists; report live and restart-only keys
    flush [ID]       retry every deferred message now, or only message ID
    new ID           a message was queued from outside: try it now
    status           pid, processes, what the server runs with
    run NAME         run periodic task NAME now (postroom.serve.tasks) and report it
    approve ID       approve held post ID (its fan-out paced by the server's runner)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("postroom.control")
Reply = dict[str, Any]
Command = Callable[..., Reply | Awaitable[Reply]]
_MAX_REQUEST = 64 * 1024


def address(state_dir: Path | str) -> str:
    real = os.path.realpath(state_dir)
    return "\0postroom:" + hashlib.sha256(real.encode()).hexdigest()[:40]


def request(state_dir: Path | str, cmd: str, *args: str,
            timeout: float = 60.0) -> Reply | None:
    """Ask the running server; None when no server listens for this site."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(address(state_dir))
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        sock.sendall(json.dumps({"cmd": cmd, "args": list(args)}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if not data:
        return {"ok": False, "error": "the server closed the control channel"}
    reply: Reply = json.loads(data)
    return reply


def tell(state_dir: Path | str, cmd: str, *args: str) -> bool:
    """A request whose answer does not matter (a hint such as ``new``); True if a
    server took it."""
    try:
        return request(state_dir, cmd, *args, timeout=5.0) is not None
    except (OSError, ValueError):
        return False


def _peer_allowed(sock: socket.socket) -> bool:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.getuid())


async def serve(state_dir: Path | str, commands: dict[str, Command]) -> asyncio.Server:
    """Answer requests with ``commands`` until the returned server is closed."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = writer.get_extra_info("socket")
            if raw is None or not _peer_allowed(raw):
                reply: Reply = {"ok": False, "error": "not allowed"}
            else:
                line = await reader.readline()
                reply = await _answer(line[:_MAX_REQUEST], commands)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(address(state_dir))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, "another postroom serve already runs for this site "
                               f"({state_dir})") from e
    return await asyncio.start_unix_server(session, sock=sock)


async def _answer(line: bytes, commands: dict[str, Command]) -> Reply:
    try:
        req = json.loads(line)
        cmd, args = req["cmd"], [str(a) for a in req.get("args", [])]
    except (ValueError, KeyError, TypeError):
        return {"ok": False, "error": "bad request"}
    handler = commands.get(cmd)
    if handler is None:
        return {"ok": False, "error": f"unknown command {cmd!r}"}
    try:
        result = handler(*args)
        if isinstance(result, Awaitable):
            result = await result
        return result
    except Exception as e:  # a failed command is reported, the server goes on
        log.exception("control command %s failed", cmd)
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
