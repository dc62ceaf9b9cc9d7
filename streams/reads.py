"""Reads of a worker's committed state, for its web endpoints (diagnostics; clients read
the query service's views). Safe from other threads: they read RocksDB, never the loop's
staged writes or caches."""

from __future__ import annotations

from typing import Any

from ledger.accounts import Account
from ledger.state import Table
from streams.processor import LedgerProcessor
from streams.store import changelog_key, partition_prefix
from topologies import partition_for


class NotOwnedError(LookupError):
    """The partition of the key belongs to another worker."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"partition {partition} belongs to another worker")
        self.partition = partition


def committed_account(processor: LedgerProcessor, account_id: str) -> tuple[int, Account | None]:
    """(partition, the account as committed) for an account of a partition this worker
    owns; NotOwnedError otherwise."""
    partition = partition_for(account_id, processor.settings.partitions)
    if not processor.owns(partition):
        raise NotOwnedError(partition)
    raw: Any = processor.local.db.get(partition_prefix(partition) + changelog_key(Table.ACCOUNTS, account_id))
    return partition, None if raw is None else processor.codec.decode(raw, expected=(Account,))
