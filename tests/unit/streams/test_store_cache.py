"""The decoded-record cache in front of RocksDB keeps what commands read again: a command's
write-once records (its dedup entry, its command-index entry, its retention entry, a credited
transfer's record) do not push the accounts out of it, and are never served stale."""

from __future__ import annotations

from pathlib import Path

from codec import Codec
from ledger.accounts import Account, AccountStatus
from ledger.state import CommandIndexEntry, DedupEntry, RetentionEntry, Table
from streams.store import LocalState, PartitionStore

CODEC = Codec()
PARTITION = 3
CACHE_ENTRIES = 16


def account(account_id: str, balance: int) -> Account:
    return Account(
        account_id=account_id,
        currency="EUR",
        status=AccountStatus.ACTIVE,
        lower_limit=0,
        upper_limit=10**9,
        balance=balance,
        held=0,
        pending_in=0,
        pending_out=0,
        sequence=1,
        parent_account_id=None,
        metadata={},
        created_at_ms=1,
        updated_at_ms=1,
    )


def dedup(command_id: str) -> DedupEntry:
    return DedupEntry(
        digest=b"\x00" * 16, command_id=command_id, command_type="Transfer", recorded_at_ms=1, result=None, waiters=[]
    )


def commit(store: PartitionStore) -> None:
    store.apply_committed(store.staged_changes())


def rocksdb_reads(local: LocalState) -> int:
    return local.keys_read()


def test_a_commands_write_once_records_do_not_push_the_accounts_out_of_the_cache(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=CACHE_ENTRIES, statistics=True)
    store = PartitionStore(local, PARTITION)
    accounts = [f"acct-{index}" for index in range(CACHE_ENTRIES // 2)]  # fit the cache; their commands do not
    for index, account_id in enumerate(accounts):
        store.put(Table.ACCOUNTS, account_id, account(account_id, index))
    commit(store)
    for number in range(3 * CACHE_ENTRIES):  # a command per transaction, each touching an account
        command_id = f"command-{number}"
        account_id = accounts[number % len(accounts)]
        held = store.get(Table.ACCOUNTS, account_id)
        store.put(Table.ACCOUNTS, account_id, account(account_id, held.balance + 1))
        store.put(Table.DEDUP, f"{account_id}|{number}", dedup(command_id))
        store.put(Table.COMMANDS, command_id, CommandIndexEntry(dedup_key=f"{account_id}|{number}"))
        store.put(Table.RETENTION, f"{number:020d}", RetentionEntry(recorded_at_ms=1, keys=[]))
        commit(store)
    before = rocksdb_reads(local)
    balances = [store.get(Table.ACCOUNTS, account_id).balance for account_id in accounts]
    assert rocksdb_reads(local) == before, "the accounts were pushed out of the cache"
    assert sum(balances) == sum(range(len(accounts))) + 3 * CACHE_ENTRIES
    local.close()


def test_a_write_once_record_changed_after_it_was_read_is_never_served_stale(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=CACHE_ENTRIES)
    store = PartitionStore(local, PARTITION)
    store.put(Table.DEDUP, "acct-1|d", dedup("first"))
    commit(store)
    store.get(Table.DEDUP, "acct-1|d")  # read: now cached
    store.put(Table.DEDUP, "acct-1|d", dedup("second"))  # a new object, as a result being recorded puts
    commit(store)
    assert store.get(Table.DEDUP, "acct-1|d").command_id == "second"
    assert PartitionStore(local, PARTITION).get(Table.DEDUP, "acct-1|d").command_id == "second"
    local.close()


def test_a_key_found_absent_is_not_asked_of_rocksdb_again(tmp_path: Path) -> None:
    """A transfer asks for its accounts' velocity rules (most have none) and twice for its
    transfer id (free? then recorded): an absent key is remembered as absent, across
    transactions for the tables the cache keeps, within the transaction for write-once ones."""
    local = LocalState(tmp_path / "db", CODEC, cache_entries=CACHE_ENTRIES, statistics=True)
    store = PartitionStore(local, PARTITION)
    assert store.get(Table.VELOCITY, "acct-1") is None
    assert store.get(Table.TRANSFERS, "t-1") is None
    reads = rocksdb_reads(local)
    assert store.get(Table.VELOCITY, "acct-1") is None and store.get(Table.TRANSFERS, "t-1") is None
    assert rocksdb_reads(local) == reads
    commit(store)  # a new transaction
    assert store.get(Table.VELOCITY, "acct-1") is None
    assert rocksdb_reads(local) == reads
    assert store.get(Table.TRANSFERS, "t-1") is None  # write-once: asked again
    assert rocksdb_reads(local) == reads + 1
    local.close()


def test_a_key_remembered_absent_is_seen_once_written_and_gone_once_deleted(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=CACHE_ENTRIES)
    store = PartitionStore(local, PARTITION)
    for table, key in ((Table.ACCOUNTS, "acct-1"), (Table.DEDUP, "acct-1|d")):
        assert store.get(table, key) is None
        value = account(key, 5) if table is Table.ACCOUNTS else dedup("c")
        store.put(table, key, value)
        assert store.get(table, key) == value  # staged over absent
        store.discard_staged()  # aborted: still absent
        assert store.get(table, key) is None
        store.put(table, key, value)
        commit(store)
        assert store.get(table, key) == value
        commit(store)
        assert store.get(table, key) == value  # from the next transaction on too
        store.delete(table, key)
        commit(store)
        assert store.get(table, key) is None
        commit(store)
        assert store.get(table, key) is None
    fresh = PartitionStore(local, PARTITION)  # what RocksDB holds agrees
    assert fresh.get(Table.ACCOUNTS, "acct-1") is None and fresh.get(Table.DEDUP, "acct-1|d") is None
    local.close()


def test_a_counted_table_counts_a_key_that_was_remembered_absent(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "db", CODEC, cache_entries=CACHE_ENTRIES)
    store = PartitionStore(local, PARTITION)
    assert store.get(Table.BATCHES, "b-1") is None  # remembered absent
    commit(store)
    assert store.get(Table.BATCHES, "b-1") is None
    store.put(Table.BATCHES, "b-1", RetentionEntry(recorded_at_ms=1, keys=[]))  # any record: counted by key
    commit(store)
    assert store.counts[Table.BATCHES] == 1
    store.delete(Table.BATCHES, "b-1")
    commit(store)
    assert store.counts[Table.BATCHES] == 0
    local.close()
