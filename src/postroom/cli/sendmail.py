"""``postroom-sendmail``: the sendmail command every Unix program calls.

    postroom-sendmail [-t] [-i|-oi] [-f sender] [-F name] [rcpt...]   queue stdin
    postroom-sendmail -bv addr...                                     verify (like sendmail -bv)
    postroom-sendmail -bp                                             list the queue (mailq)

Options sendmail accepts that mean nothing here (-odb, -oem, -v, -U, ...) are ignored, so
existing cron jobs and scripts keep working.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass, field

from postroom.errors import EX_DATAERR, EX_NOUSER, EX_OK, EX_USAGE, PostroomError

USAGE = "usage: postroom-sendmail [-t] [-i] [-f sender] [-bv|-bp] [rcpt ...]"
HELP = f"""{USAGE}

Queue the message read from standard input, as sendmail does (the site is
$POSTROOM_SITE). The running server is told at once and makes the first attempt.

  rcpt ...     recipients (an address no map knows is reported and left out)
  -t           read the recipients from To, Cc and Bcc (Bcc is then removed)
  -i, -oi      a line with a single "." does not end the message
  -f SENDER    the envelope sender (default: the user running the command)
  -F NAME      the sender's full name, for a From header the message lacks
  -bv ADDR...  verify: where each address goes (postroom verify)
  -bp          print the queue (postroom queue)

Example:  printf 'Subject: hi\\n\\nhello\\n' | postroom-sendmail -f me@example.org rt
"""


@dataclass
class Args:
    mode: str = "send"  # send | verify | print
    extract: bool = False
    dots: bool = True  # a line with a single "." ends input unless -i
    sender: str | None = None
    full_name: str | None = None
    recipients: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> Args:
    args = Args()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            args.recipients += argv[i + 1 :]
            break
        if not a.startswith("-") or a == "-":
            args.recipients.append(a)
        elif a == "-bv":
            args.mode = "verify"
        elif a == "-bp":
            args.mode = "print"
        elif a in ("-bm", "-bs"):
            pass  # -bm is the default; -bs (SMTP on stdin) is not offered
        elif a == "-t":
            args.extract = True
        elif a in ("-i", "-oi"):
            args.dots = False
        elif a.startswith("-f") or a.startswith("-r"):
            if len(a) > 2:
                args.sender = a[2:]
            else:
                i += 1
                if i >= len(argv):
                    raise ValueError(f"{a} needs a sender address")
                args.sender = argv[i]
        elif a.startswith("-F"):
            if len(a) > 2:
                args.full_name = a[2:]
            else:
                i += 1
                args.full_name = argv[i] if i < len(argv) else ""
        elif a.startswith("-o") or a.startswith("-B") or a.startswith("-N") or a.startswith("-R") \
                or a.startswith("-V") or a in ("-v", "-U", "-m", "-n", "-em", "-ee", "-eq"):
            if a in ("-B", "-N", "-R", "-V", "-O"):
                i += 1  # option with a separate argument
        else:
            raise ValueError(f"unknown option {a}")
        i += 1
    return args


def read_message(stream: bytes, dots: bool) -> bytes:
    """Normalise line ends to CRLF; with dots on, a line of just '.' ends the message."""
    lines = stream.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out: list[bytes] = []
    for line in lines:
        if dots and line == b".":
            break
        out.append(line)
    return b"".join(line + b"\r\n" for line in out)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--help"], ["-h"]):
        print(HELP, end="")
        sys.exit(EX_OK)
    try:
        args = parse_args(argv)
    except ValueError as e:
        print(f"postroom-sendmail: {e}\n{USAGE}", file=sys.stderr)
        sys.exit(EX_USAGE)
    site_dir = os.environ.get("POSTROOM_SITE")
    try:
        if args.mode == "verify":
            from postroom.cli.verify import run_verify

            if not args.recipients:
                print(USAGE, file=sys.stderr)
                sys.exit(EX_USAGE)
            sys.exit(run_verify(site_dir, args.recipients))
        if args.mode == "print":
            from postroom.cli.queue import queue

            queue.main(args=[], prog_name="postroom-sendmail -bp")  # exits
        sys.exit(submit(site_dir, args, sys.stdin.buffer.read()))
    except PostroomError as e:
        print(f"postroom-sendmail: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


def submit(site_dir: str | None, args: Args, raw: bytes) -> int:
    from postroom.intake.pickup import submit_local

    data = read_message(raw, args.dots)
    sender = args.sender if args.sender is not None else getpass.getuser()
    try:
        queue_id, refused = submit_local(site_dir, sender, args.recipients, data,
                                         extract=args.extract, full_name=args.full_name)
    except ValueError as e:
        print(f"postroom-sendmail: {e}", file=sys.stderr)
        return EX_DATAERR
    for address, text in refused:
        print(f"{address}... {text}", file=sys.stderr)
    if queue_id is None:
        return EX_NOUSER
    return EX_OK
