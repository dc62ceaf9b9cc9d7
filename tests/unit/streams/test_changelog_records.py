"""What one Kafka transaction writes to the changelog (issue 15: fewer records per command).
Each state record is staged by key and written once per transaction, its last value: the
accounts of a batch of transfers cost one record each however many transfers touch them.
What each command still adds on its own is its dedup entry, its command-index entry and
its retention entry (folding those three into one record is a ledger change, not yet done)."""

from __future__ import annotations

import collections
from pathlib import Path

from codec import Codec
from ledger import commands
from ledger.shard import Shard, ShardConfig
from ledger.state import Table
from streams.store import LocalState, PartitionStore
from tests.principals import TESTER

CODEC = Codec()
TRANSFERS = 50


def test_a_batch_of_transfers_writes_each_account_once_its_last_state(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=100)
    store = PartitionStore(local, 0)
    shard = Shard(store=store, config=ShardConfig(), is_local=lambda key: True)
    for account in ("alice", "bob"):
        shard.handle(
            commands.OpenAccount(
                principal=TESTER,
                owner=TESTER.principal_id,
                command_id=f"open-{account}",
                dedup_id="open",
                account_id=account,
                currency="USD",
            ),
            timestamp_ms=1,
        )
    for account in ("alice", "bob"):
        shard.handle(
            commands.Deposit(
                principal=TESTER,
                command_id=f"fund-{account}",
                dedup_id="fund",
                account_id=account,
                amount=10_000,
                currency="USD",
            ),
            timestamp_ms=1,
        )
    store.apply_committed(store.staged_changes())  # the set-up's transaction
    for index in range(TRANSFERS):  # one transaction
        outcome = shard.handle(
            commands.Transfer(
                principal=TESTER,
                command_id=f"t{index}",
                dedup_id=f"t{index}",
                from_account_id="alice" if index % 2 == 0 else "bob",
                to_account_id="bob" if index % 2 == 0 else "alice",
                amount=10 + index,
                currency="USD",
            ),
            timestamp_ms=2,
        )
        assert [result.code for result in outcome.results] == [None]
    records = store.staged_changes()
    per_table = collections.Counter(Table(key[:1].decode()) for key, _ in records)
    assert per_table[Table.ACCOUNTS] == 2  # not 2 per transfer
    assert per_table[Table.META] == 1
    assert (per_table[Table.DEDUP], per_table[Table.COMMANDS]) == (TRANSFERS, TRANSFERS)
    accounts = {key: CODEC.decode(value or b"") for key, value in records if key[:1] == Table.ACCOUNTS.value.encode()}
    # The last value wins: alice paid 10+12+...+58 and received 11+13+...+59.
    sent = sum(10 + index for index in range(0, TRANSFERS, 2))
    received = sum(10 + index for index in range(1, TRANSFERS, 2))
    assert accounts[b"aalice"].balance == 10_000 - sent + received
    assert accounts[b"abob"].balance == 10_000 + sent - received
    local.close()
