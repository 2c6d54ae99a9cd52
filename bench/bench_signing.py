#!/usr/bin/env python3
"""DKIM signing and ARC sealing cost per message, in process, with the real code
(``postroom.signing``): a realistic 6 KB message, signed with RSA-2048 and with ed25519,
then sealed (ARC needs RSA). The goal (issue 14): at most 0.3 ms per message for sign +
seal. Sealing here starts from a message that already has our Authentication-Results
(what ``stamp`` writes); ``stamp`` itself is a DNS matter and is not measured. Results go
to ``bench/results/signing.json``, figures to docs/performance.md, not here. Run::

    .venv/bin/python bench/bench_signing.py [--messages 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from postroom.signing import arcseal, body_memo, dkimsign, rsa_openssl
from postroom.signing.keys import Key, generate

try:  # as a module of the bench package (bench/run.py) or as a script
    from .common import write_result
except ImportError:
    from common import write_result  # type: ignore[no-redef]

AUTHSERV = "mail.example.ac.uk"


def sample() -> bytes:
    body = "A line of an ordinary announcement, long enough to be realistic.\r\n" * 90
    return (f"Authentication-Results: {AUTHSERV};\r\n\tdkim=none;\r\n\tdmarc=none "
            "header.from=example.org\r\n"
            "From: Ann <ann@example.ac.uk>\r\nTo: staff@lists.example.ac.uk\r\n"
            "Subject: the weekly notice\r\nMessage-ID: <1@example.org>\r\n"
            "List-Id: <staff.lists.example.ac.uk>\r\n"
            "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n" + body).encode()


def distinct(message: bytes, n: int) -> list[bytes]:
    """``n`` messages whose bodies differ (in their last line): no signature of one can
    use what was computed for another (``body_memo`` keeps the last body)."""
    return [message + f"-- {i}\r\n".encode() for i in range(n)]


def per_message(fn: Callable[[bytes], bytes], messages: list[bytes], rounds: int) -> float:
    """The best round's mean CPU time per call, in ms: the machine is shared, so this
    process's CPU time (not the wall clock) and the least disturbed round."""
    results = []
    for _ in range(rounds):
        start = time.process_time()
        for m in messages:
            fn(m)
        results.append((time.process_time() - start) / len(messages) * 1000)
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-body-memo", action="store_true",
                        help="dkimpy canonicalising every body (the code before body_memo)")
    args = parser.parse_args()
    msg = sample()
    rsa_openssl.install()  # as postroom.signing.outgoing does
    if not args.no_body_memo:
        body_memo.install()
    with tempfile.TemporaryDirectory() as d:
        rsa = generate(Path(d), "example.ac.uk", "r", "rsa")
        ed = generate(Path(d), "example.ac.uk", "e", "ed25519")

        def sign(key: Key) -> Callable[[bytes], bytes]:
            return lambda m: dkimsign.sign(m, key)

        def seal(m: bytes) -> bytes:
            return arcseal.seal(m, rsa, AUTHSERV)

        def list_copy(key: Key) -> Callable[[bytes], bytes]:
            """A member's copy of a list post (``lists.fanout``): the ARC set made once
            per queued message of 1,000 members, the DKIM signature per copy; every copy
            has the post's body."""
            made = {"n": 0, "sealed": b""}

            def copy(m: bytes) -> bytes:
                if made["n"] % 1000 == 0:
                    made["sealed"] = seal(m)
                made["n"] += 1
                return dkimsign.sign(made["sealed"], key)
            return copy

        cases = {
            "dkim sign rsa-2048": sign(rsa),
            "dkim sign ed25519": sign(ed),
            "arc seal rsa-2048": seal,
            "sign rsa + seal": lambda m: seal(dkimsign.sign(m, rsa)),
            "sign ed25519 + seal": lambda m: seal(dkimsign.sign(m, ed)),
            "list copy rsa (ARC per 1,000)": list_copy(rsa),
            "list copy ed25519 (ARC per 1,000)": list_copy(ed),
        }
        print(f"message {len(msg)} bytes, {args.messages} messages x {args.rounds} rounds")
        figures = {}
        one_post = [msg] * args.messages
        for name, fn in cases.items():
            messages = one_post if name.startswith("list copy") else distinct(msg, args.messages)
            ms = figures[name] = per_message(fn, messages, args.rounds)
            print(f"{name:34s} {ms:7.3f} ms/message")
    path = write_result("signing_no_memo" if args.no_body_memo else "signing",
                        {"message_bytes": len(msg), "messages": args.messages,
                         "body_memo": not args.no_body_memo, "rounds": args.rounds,
                         "ms_per_message": figures, "goal_ms": 0.3})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
