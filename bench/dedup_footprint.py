"""What a day of idempotency costs on disk, per 1,000 commands/s.

Runs the real shard over the worker's own RocksDB store (`streams.store`, the worker's
options) for a stream of typical Deposits, and of typical Transfers to another partition,
and measures what each command leaves behind for the idempotency window:

- its DedupEntry (with its result), its CommandIndexEntry and its RetentionEntry; for a
  transfer also the TransferRecord on the destination's partition (what a reversal needs)
  and the RetentionEntry there;
- as the changelog topic carries them once compacted: key + Avro single-object value,
  plus Kafka's ~10 bytes of per-record framing (no producer compression is configured);
- as RocksDB stores them: the SST files after a flush and a full compaction (prefix
  compression, block compression, index and bloom filters included), less the same store
  with the accounts alone.

    python -m bench.dedup_footprint [--commands 100000]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.principal import BENCH_PRINCIPAL
from codec import Codec
from ledger import commands
from ledger.legs import Leg
from ledger.shard import Shard, ShardConfig
from ledger.state import Table
from streams.store import LocalState, PartitionStore, partition_prefix

ACCOUNTS = 1_000
DAY_S = 86_400
RATE_PER_S = 1_000
KAFKA_RECORD_FRAMING_BYTES = 10  # v2 record: length, attributes, deltas, key/value lengths, headers
GIB = 1024**3
_WINDOW_TABLES = (Table.DEDUP, Table.COMMANDS, Table.RETENTION, Table.TRANSFERS)


def _uuid(rng: random.Random) -> str:
    """A client's id, as most clients make them (a UUID's 36 characters)."""
    digits = f"{rng.getrandbits(128):032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _account(partition: int, index: int) -> str:
    return f"customer-{index:08d}@{partition}"


class _Partitions:
    """Two shards (partitions 0 and 1) in one worker's RocksDB; legs go straight across."""

    def __init__(self, path: Path) -> None:
        self.local = LocalState(path, Codec(), cache_entries=100_000)
        self.stores = [PartitionStore(self.local, partition) for partition in (0, 1)]
        self.shards = [
            Shard(store=store, config=ShardConfig(), is_local=self._is_local(partition))
            for partition, store in enumerate(self.stores)
        ]
        self.now_ms = 1_000

    @staticmethod
    def _is_local(partition: int) -> Callable[[str], bool]:
        return lambda key: key.endswith(f"@{partition}")

    def run(self, command: commands.Command) -> None:
        self.now_ms += 1
        pending: list[tuple[int, commands.Command | Leg]] = [(int(command.routing_key[-1]), command)]
        while pending:
            partition, message = pending.pop(0)
            outcome = self.shards[partition].handle(message, timestamp_ms=self.now_ms)
            pending.extend((int(leg.routing_key[-1]), leg) for leg in outcome.legs)

    def commit(self) -> None:
        for store in self.stores:
            store.apply_committed(store.staged_changes())

    def changelog_bytes(self) -> dict[Table, int]:
        """Key + value (+ framing) of every live record of the window's tables, by table, as
        the compacted changelog holds them."""
        total = dict.fromkeys(_WINDOW_TABLES, 0)
        for partition in (0, 1):
            for table in _WINDOW_TABLES:
                prefix = partition_prefix(partition) + table.value.encode()
                iterator = self.local.db.iter()
                iterator.seek(prefix)
                while iterator.valid() and iterator.key().startswith(prefix):
                    key_length = len(iterator.key()) - len(partition_prefix(partition))
                    total[table] += key_length + len(iterator.value()) + KAFKA_RECORD_FRAMING_BYTES
                    iterator.next()
        return total

    def records(self) -> int:
        return sum(self.local.keys_of(partition) for partition in (0, 1))

    def disk_bytes(self, path: Path) -> int:
        self.local.db.flush()
        self.local.db.compact_range(None, None)
        return sum(file.stat().st_size for file in path.glob("*.sst"))


@dataclasses.dataclass(frozen=True, slots=True)
class Footprint:
    records: float  # per command
    changelog_bytes: dict[Table, float]  # per command, by table
    disk_bytes: float  # per command


def _measure(count: int, make: Callable[[random.Random], commands.Command]) -> Footprint:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="dedup-footprint-") as folder:
        path = Path(folder)
        partitions = _Partitions(path)
        for partition in (0, 1):
            for index in range(ACCOUNTS):
                account = _account(partition, index)
                partitions.run(
                    commands.OpenAccount(
                        principal=BENCH_PRINCIPAL,
                        owner=BENCH_PRINCIPAL.principal_id,
                        command_id=_uuid(rng),
                        dedup_id=_uuid(rng),
                        account_id=account,
                        currency="USD",
                    )
                )
                partitions.run(
                    commands.Deposit(
                        principal=BENCH_PRINCIPAL,
                        command_id=_uuid(rng),
                        dedup_id=_uuid(rng),
                        account_id=account,
                        amount=10**12,
                        currency="USD",
                    )
                )
        partitions.commit()
        base_disk, base_changelog, base_records = (
            partitions.disk_bytes(path),
            partitions.changelog_bytes(),
            partitions.records(),
        )
        for done in range(1, count + 1):
            partitions.run(make(rng))
            if done % 500 == 0:
                partitions.commit()
        partitions.commit()
        changelog = partitions.changelog_bytes()
        footprint = Footprint(
            records=(partitions.records() - base_records) / count,
            changelog_bytes={table: (changelog[table] - base_changelog[table]) / count for table in _WINDOW_TABLES},
            disk_bytes=(partitions.disk_bytes(path) - base_disk) / count,
        )
        partitions.local.close()
    return footprint


def _deposit(rng: random.Random) -> commands.Command:
    return commands.Deposit(
        principal=BENCH_PRINCIPAL,
        command_id=_uuid(rng),
        dedup_id=_uuid(rng),
        account_id=_account(0, rng.randrange(ACCOUNTS)),
        amount=rng.randrange(1, 100_000),
        currency="USD",
        metadata={"source": "card"},
    )


def _transfer(rng: random.Random) -> commands.Command:
    return commands.Transfer(
        principal=BENCH_PRINCIPAL,
        command_id=_uuid(rng),
        dedup_id=_uuid(rng),
        from_account_id=_account(0, rng.randrange(ACCOUNTS)),
        to_account_id=_account(1, rng.randrange(ACCOUNTS)),
        amount=rng.randrange(1, 100_000),
        currency="USD",
        metadata={"memo": "invoice 2026-0042"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=100_000)
    args = parser.parse_args()
    per_day = RATE_PER_S * DAY_S
    print(f"what each command leaves for the idempotency window ({args.commands:,} commands, ids are UUIDs)")
    print(f"{'':<30}{'records':>8}{'changelog B':>13}{'RocksDB B':>11}{'changelog GiB/day':>19}{'RocksDB GiB/day':>17}")
    for label, make in (("Deposit", _deposit), ("Transfer to another partition", _transfer)):
        footprint = _measure(args.commands, make)
        changelog = sum(footprint.changelog_bytes.values())
        print(
            f"{label:<30}{footprint.records:>8.2f}{changelog:>13.0f}{footprint.disk_bytes:>11.0f}"
            f"{changelog * per_day / GIB:>19.1f}{footprint.disk_bytes * per_day / GIB:>17.1f}"
        )
        shares = ", ".join(f"{table.name} {share:.0f}" for table, share in footprint.changelog_bytes.items() if share)
        print(f"{'':<30}changelog bytes by table: {shares}")
    print(f"per day = {per_day:,} commands (1,000 commands/s); the changelog is per replica (x the replication factor)")


if __name__ == "__main__":
    main()
