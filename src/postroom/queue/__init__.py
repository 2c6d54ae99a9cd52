"""The durable queue: envelope model, spool (durable before 250), scheduling, DSNs."""
