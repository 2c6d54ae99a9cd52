"""The envelope file: JSON that ``cat`` shows, and that reads back to the same envelope."""

from __future__ import annotations

import json
from dataclasses import asdict

from hypothesis import given
from hypothesis import strategies as st

from postroom.envelope import Delivery, Envelope, RcptState, Recipient

text = st.text(max_size=20)
deliveries = st.builds(Delivery, text, text, text, text, st.sampled_from(list(RcptState)),
                       st.integers(0, 99), st.floats(0, 2e9), st.floats(0, 2e9), text, text,
                       text, st.booleans())
recipients = st.builds(Recipient, text, st.lists(deliveries, max_size=3),
                       st.none() | text,
                       st.none() | st.lists(st.sampled_from(["SUCCESS", "FAILURE", "DELAY"])))
envelopes = st.builds(Envelope, text, st.lists(recipients, max_size=3), st.floats(0, 2e9),
                      text, st.integers(0, 10**9), st.none() | st.sampled_from(["FULL", "HDRS"]),
                      st.none() | text, smtputf8=st.booleans(), kind=text)


@given(envelopes)
def test_json_is_every_field_and_reads_back(env: Envelope) -> None:
    raw = env.to_json()
    assert json.loads(raw) == json.loads(json.dumps(asdict(env)))
    assert Envelope.from_json(raw) == env


def test_json_is_readable() -> None:
    env = Envelope("a@example.org", [Recipient("b@example.net", [
        Delivery("esmtp", "example.net", "b@example.net", "b@example.net")])], 1.5, id="X1")
    raw = json.loads(env.to_json())
    assert raw["sender"] == "a@example.org"
    assert raw["recipients"][0]["deliveries"][0]["state"] == "pending"
