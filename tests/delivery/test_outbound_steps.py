"""Which last steps of a delivery the runner makes in its event loop (a DKIM signature
alone: CPU only) and which it hands to a thread (an ARC assessment asks DNS)."""

from __future__ import annotations

from pathlib import Path

from postroom import runtime
from postroom.runner import outbound
from tests.delivery.conftest import make_job


def test_only_our_own_mail_to_another_domain_is_signed_in_the_loop(
        example_site: Path) -> None:
    rt = runtime.build(example_site)
    ours = [make_job("esmtp", "mx.example.org", ["u@example.org"], auth_user="ann",
                     client_addr="192.0.2.7"),
            make_job("esmtp", "mx.example.org", ["u@example.org"],
                     client_addr="127.0.0.3"),  # an internal machine (networks.relay)
            make_job("relay", "smarthost", ["u@example.org"], protocol="local")]
    for job in ours:
        assert outbound.signs_only(rt, job.envelope, job), job.envelope
    others = [make_job("esmtp", "mx.example.org", ["u@example.org"],
                       client_addr="192.0.2.7"),  # forwarded: assessed (DNS), sealed
              make_job("esmtp", "mx.example.org", ["u@example.org"],
                       client_addr="127.0.0.2"),  # from the inbound relay
              make_job("list", "", ["physics@inf.example.ac.uk"], auth_user="ann"),
              make_job("esmtp", "mx.example.org", ["u@example.org"], auth_user="ann",
                       message=b"Subject: big\r\n\r\n" + b"x" * 300_000)]  # long to sign
    for job in others:
        assert not outbound.signs_only(rt, job.envelope, job), job.envelope
