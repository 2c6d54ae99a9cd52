"""Fuzzing (issue 10, item 3): hypothesis properties for the SMTP intake (a real
``postroom serve`` and the same protocol in-process), the map readers, the profile loader,
DSN generation and the address parser.

``make test`` runs each target on a short budget. ``make fuzz`` (``scripts/fuzz.py``) runs
them for 10^6 inputs each and reports, per target, the inputs tried and the crashes,
unhandled exceptions, hangs and property violations found. ``harness`` holds the budget,
the outcome counting and the corpus; ``corpus/<target>/`` holds inputs that once failed.
"""
