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
