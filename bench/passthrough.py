"""Baseline (b): the ledger worker's exactly-once machinery with the ledger taken out.
Same Faust host, same transactional loop, same topics and partitions; each command is
decoded and answered with one event and one result, with no state read or written.

    python -m bench.passthrough worker      (configured by STREAMWALLET_* variables)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from foundation.settings import Settings
from ledger.accounts import AccountStatus
from ledger.events import AccountEvent, CommandResult, EventKind, ResultStatus
from ledger.legs import Tick
from ledger.shard import Outcome
from streams.app import run_worker
from streams.store import PartitionStore


class PassThrough:
    def wants_tick(self, now_ms: int) -> bool:
        return False  # nothing here waits for time: its ticks did nothing

    def handle(self, message: Any, *, timestamp_ms: int) -> Outcome:
        if isinstance(message, Tick):
            return Outcome()
        event = AccountEvent(
            account_id=message.routing_key,
            sequence=0,
            kind=EventKind.DEPOSITED,
            amount=getattr(message, "amount", 0),
            held_change=0,
            currency=getattr(message, "currency", "USD"),
            balance=0,
            held=0,
            available=0,
            pending_in=0,
            pending_out=0,
            lower_limit=0,
            upper_limit=0,
            status=AccountStatus.ACTIVE,
            parent_account_id=None,
            metadata=None,
            command_id=message.command_id,
            dedup_id=getattr(message, "dedup_id", ""),
            correlation_id=None,
            counterparty_account_id=None,
            code=None,
            occurred_at_ms=timestamp_ms,
        )
        result = CommandResult(
            command_id=message.command_id,
            dedup_id=event.dedup_id,
            command_type=type(message).__name__,
            status=ResultStatus.ACCEPTED,
            code=None,
            message="",
            reference_id=None,
            positions=[],
            replayed=False,
            original_command_id=message.command_id,
            decided_at_ms=timestamp_ms,
            queried=None,
        )
        return Outcome(events=[event], results=[result])


def pass_through(store: PartitionStore, is_local: Callable[[str], bool]) -> PassThrough:
    return PassThrough()


if __name__ == "__main__":
    assert sys.argv[1:] == ["worker"], "usage: python -m bench.passthrough worker"
    run_worker(Settings.from_environment(), loglevel="warning", decider=pass_through)
