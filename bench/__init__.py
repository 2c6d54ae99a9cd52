"""Benchmarks for postroom and the Postfix reference; see docs/performance.md."""
