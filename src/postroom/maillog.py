"""The mail log, ``SITE/log/mail.log``: one line per event, in sendmail's and Postfix's
spirit so existing log tools can read it::

    Nov 25 20:40:01 mail postroom[1234]: 0KXYZ12AB: from=<a@b>, size=1234, nrcpts=1,
        proto=ESMTP, relay=client.example [192.0.2.1], auth=alice, tls=TLSv1.3
    Nov 25 20:40:02 mail postroom[1234]: reject: RCPT from [192.0.2.9]: 550 5.7.1 ...

One function per event (chasquid's maillog). Several processes append to the same file:
each line is one ``write`` on an ``O_APPEND`` descriptor, so lines never interleave.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

_fd: int | None = None
_path: Path | None = None
_host = "postroom"


def open_log(path: Path, hostname: str) -> None:
    global _fd, _path, _host
    close_log()
    path.parent.mkdir(parents=True, exist_ok=True)
    _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    _path, _host = path, hostname.split(".")[0]


def reopen() -> None:
    """Open the log file again by its name (after log rotation moved the old one)."""
    if _path is not None:
        open_log(_path, _host)


def close_log() -> None:
    global _fd
    if _fd is not None:
        os.close(_fd)
        _fd = None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_stamp: tuple[int, str] = (-1, "")


def _clean(text: str) -> str:
    """Log lines never carry a client's CR/LF or control characters."""
    return _CONTROL.sub("?", text)


def line(text: str) -> None:
    global _stamp
    if _fd is None:
        return
    now = int(time.time())
    if _stamp[0] != now:  # strftime once a second, not once a line
        _stamp = (now, time.strftime("%b %d %H:%M:%S", time.localtime(now)))
    line = f"{_stamp[1]} {_host} postroom[{os.getpid()}]: {_clean(text)}\n"
    try:
        os.write(_fd, line.encode("utf-8", "backslashreplace"))  # 8-bit input: \xNN
    except OSError as e:
        # a full or failing log disk must not stop mail: the line goes to stderr (the
        # service's journal) instead, and the mail goes on
        _lost(line, e)


def _lost(line: str, e: OSError) -> None:
    try:
        sys.stderr.write(f"postroom: mail log not written ({e.strerror}): {line}")
    except (OSError, ValueError):
        pass


def relay_text(name: str, addr: str) -> str:
    return f"{name or 'unknown'} [{addr}]"


def accepted(queue_id: str, sender: str, size: int, nrcpts: int, proto: str, relay: str,
             auth: str = "", tls: str = "") -> None:
    parts = [f"{queue_id}: from=<{sender}>, size={size}, nrcpts={nrcpts}, proto={proto}, "
             f"relay={relay}"]
    if auth:
        parts.append(f"auth={auth}")
    if tls:
        parts.append(f"tls={tls}")
    line(", ".join(parts))


def rejected(stage: str, relay: str, reply: str, *, sender: str | None = None,
             rcpt: str | None = None) -> None:
    extra = ""
    if sender is not None:
        extra += f" from=<{sender}>"
    if rcpt is not None:
        extra += f" to=<{rcpt}>"
    line(f"reject: {stage} from {relay}: {reply};{extra}")


def event(text: str) -> None:
    """Server life-cycle: started, reloaded, quiescent, draining."""
    line(text)


def delivery(queue_id: str, to: str, orig_to: str, mailer: str, relay: str, delay: float,
             tries: int, dsn: str, stat: str, *, srs: str = "") -> None:
    """``srs``: the envelope sender this delivery went out with when SRS rewrote it."""
    d = int(delay)
    delay_text = f"{d // 86400}+{d % 86400 // 3600:02d}:{d % 3600 // 60:02d}:{d % 60:02d}" \
        if d >= 86400 else f"{d // 3600}:{d % 3600 // 60:02d}:{d % 60:02d}"
    orig = f", orig_to=<{orig_to}>" if orig_to and orig_to != to else ""
    rewritten = f"srs=<{srs}>, " if srs else ""  # before stat=, which stays last
    line(f"{queue_id}: to=<{to}>{orig}, mailer={mailer}, relay={relay}, delay={delay_text}, "
         f"tries={tries}, dsn={dsn}, {rewritten}stat={stat}")
