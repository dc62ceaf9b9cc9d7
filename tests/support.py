"""Test helpers that read what the system wrote to Kafka (the readers themselves live in
bench/topics.py, which the benchmarks share: tests may import bench, never the other way)."""

from __future__ import annotations

from bench.topics import read_decoded, read_topic
from ledger.events import CommandResult

__all__ = ["outcome", "read_decoded", "read_topic"]


def outcome(result: CommandResult) -> tuple[str, str | None, bool]:
    """(status, code, replayed) of a result, as plain values for comparisons."""
    return result.status.value, None if result.code is None else result.code.value, result.replayed
