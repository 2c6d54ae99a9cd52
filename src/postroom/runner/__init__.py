"""The queue runner, above the queue and the couriers: scheduling, rerouting with the
current maps, lifetime and DSN policy, claims and limits, and ``inject``."""

from postroom.runner.inject import inject, inject_from_command
from postroom.runner.runner import QueueRunner

__all__ = ["QueueRunner", "inject", "inject_from_command"]
