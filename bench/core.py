"""The domain core alone, on one core: how many commands per second the state machine
applies in-process (no Kafka, no RocksDB), and how fast events encode and decode.
The core must never be what limits the Kafka path. Then the worker's own work without
Kafka: the same transfers decided over RocksDB (streams/store.py), committed in
transactions of 500, with every event, result and changelog record encoded, at
real-clock timestamps: the CPU a transfer costs the worker before the Kafka client.

    python -m bench.core [--commands 200000]
"""

from __future__ import annotations

import argparse
import collections
import gc
import io
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fastavro import schemaless_reader

from bench.principal import BENCH_PRINCIPAL
from codec import Codec
from codec.avro import HEADER_LENGTH
from ledger import commands
from ledger.events import AccountEvent
from ledger.shard import Shard, ShardConfig
from ledger.state import InMemoryStore
from streams.processor import GC_THRESHOLDS
from streams.store import LocalState, PartitionStore

ACCOUNTS = 10_000
TRANSACTION_COMMANDS = 500  # the worker's batches under load are about this size
# Commands a millisecond in the worker path, as the worker sees them at its one-at-a-time peak
# (bench.bulk: ~7,000/s; the commands topic stamps LogAppendTime). A bundle's commands all share
# one timestamp, which lets more of them share a retention entry (ledger/retention.py).
COMMANDS_PER_MS = 7
CLOCK_MS = 1_764_460_800_000  # a real clock: times are six-byte longs, as in the worker
CACHE_ENTRIES = 100_000  # the worker's default decoded-record cache


def _shard() -> Shard:
    shard = Shard(store=InMemoryStore(isolate=False), config=ShardConfig(), is_local=lambda _: True)
    for index in range(ACCOUNTS):
        for command in _opening(index):
            shard.handle(command, timestamp_ms=1)
    return shard


def _worker_path(transfers: Sequence[commands.Command]) -> tuple[Callable[[], None], collections.Counter[str]]:
    """The worker's work on `transfers` without Kafka: decided over a RocksDB-backed store,
    their events and results encoded, each transaction's changelog records encoded and
    written to RocksDB (streams/processor.py does the same, and hands the bytes to Kafka).
    The counter it returns tallies, once it has run, the records those transfers wrote:
    produced (events, results, legs) and changelog."""
    codec = Codec()
    folder = tempfile.TemporaryDirectory(prefix="bench-core-")
    local = LocalState(Path(folder.name), codec, cache_entries=CACHE_ENTRIES)
    store = PartitionStore(local, 0)
    shard = Shard(store=store, config=ShardConfig(), is_local=lambda _: True)
    encode = codec.encode
    written: collections.Counter[str] = collections.Counter()

    def commit() -> None:
        changes = store.staged_changes()
        written["changelog"] += len(changes)
        store.apply_committed(changes)

    def decide(batch: Sequence[commands.Command], first_ms: int) -> None:
        produced = 0
        for index, command in enumerate(batch):
            outcome = shard.handle(command, timestamp_ms=first_ms + index // COMMANDS_PER_MS)
            for event in outcome.events:
                encode(event)
            for result in outcome.results:
                encode(result)
            produced += len(outcome.events) + len(outcome.results) + len(outcome.legs)
            if (index + 1) % TRANSACTION_COMMANDS == 0:
                commit()
        commit()
        written["produced"] += produced

    opening = [command for index in range(ACCOUNTS) for command in _opening(index)]
    decide(opening, CLOCK_MS)
    written.clear()

    def run() -> None:
        try:
            decide(transfers, CLOCK_MS + len(opening) // COMMANDS_PER_MS + 1_000)  # a second after the last open
        finally:
            local.close()
            folder.cleanup()

    return run, written


def _opening(index: int) -> tuple[commands.Command, commands.Command]:
    account_id = f"a{index}"
    return (
        commands.OpenAccount(
            principal=BENCH_PRINCIPAL,
            owner=BENCH_PRINCIPAL.principal_id,
            command_id=f"o{index}",
            dedup_id=f"o{index}",
            account_id=account_id,
            currency="USD",
        ),
        commands.Deposit(
            principal=BENCH_PRINCIPAL,
            command_id=f"s{index}",
            dedup_id=f"s{index}",
            account_id=account_id,
            amount=10**12,
            currency="USD",
        ),
    )


def _cpu_timed(label: str, count: int, run: Callable[[], None]) -> float:
    """CPU seconds of this process per 1,000 (what the worker's figure in bench.bulk counts)."""
    started = time.process_time()
    run()
    per_thousand = (time.process_time() - started) / count * 1000
    print(f"  {label:<44} {per_thousand:>12.3f} CPU s per 1,000   ({per_thousand * 1000:.1f} µs each)")
    return per_thousand


def _timed(label: str, count: int, run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    print(f"  {label:<44} {count / elapsed:>12,.0f} /s   ({elapsed / count * 1e6:.1f} µs each)")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=200_000)
    args = parser.parse_args()
    count = args.commands
    print(f"domain core, one thread, {ACCOUNTS:,} accounts, in-memory store, the worker's GC settings")
    deposits = [
        commands.Deposit(
            principal=BENCH_PRINCIPAL,
            command_id=f"d{i}",
            dedup_id=f"d{i}",
            account_id=f"a{i % ACCOUNTS}",
            amount=100,
            currency="USD",
        )
        for i in range(count)
    ]
    transfers = [
        commands.Transfer(
            principal=BENCH_PRINCIPAL,
            command_id=f"t{i}",
            dedup_id=f"t{i}",
            from_account_id=f"a{i % ACCOUNTS}",
            to_account_id=f"a{(i * 7 + 1) % ACCOUNTS}",
            amount=1,
            currency="USD",
        )
        for i in range(count)
    ]
    shard = _shard()
    # The worker's garbage-collector settings (without them, full collections over the
    # growing dedup memory take a third of the time here, as they once did in the worker).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

    def apply(batch: Sequence[commands.Command]) -> Callable[[], None]:
        def run() -> None:
            handle = shard.handle
            for index, command in enumerate(batch):
                handle(command, timestamp_ms=2 + index)

        return run

    _timed("deposits applied", count, apply(deposits))
    in_memory = _timed("transfers applied (same shard)", count, apply(transfers))
    print(f"the worker's work without Kafka: RocksDB, {TRANSACTION_COMMANDS}-command transactions, everything encoded")
    worker_path, written = _worker_path(transfers)  # a shard of its own: the same commands are new to it
    cost = _cpu_timed("transfers decided, encoded, committed", count, worker_path)
    print(f"  the in-memory core's share of it, same run: {1000 / in_memory / cost:.2f}")
    print(
        f"  records a transfer writes: {written['produced'] / count:.2f} produced (events, results, legs), "
        f"{written['changelog'] / count:.2f} changelog ({COMMANDS_PER_MS} commands a millisecond)"
    )

    codec = Codec()
    probe = _shard()
    events = [
        event
        for i in range(2000)
        for event in probe.handle(
            commands.Transfer(
                principal=BENCH_PRINCIPAL,
                command_id=f"p{i}",
                dedup_id=f"p{i}",
                from_account_id=f"a{i}",
                to_account_id=f"a{i + 1}",
                amount=1,
                currency="USD",
            ),
            timestamp_ms=5,
        ).events
    ]
    encoded = [codec.encode(event) for event in events]
    size = sum(len(data) for data in encoded)
    rounds = max(1, count // len(events))

    def encode_all() -> None:
        for _ in range(rounds):
            for event in events:
                codec.encode(event)

    def decode_all() -> None:
        for _ in range(rounds):
            for data in encoded:
                codec.decode(data)

    plain = codec.schema(AccountEvent).parsed_plain

    def fastavro_records() -> None:  # the baseline: fastavro's compiled reader, record (dict) only
        for _ in range(rounds):
            for data in encoded:
                schemaless_reader(io.BytesIO(data[HEADER_LENGTH:]), plain, None)

    def generated_records() -> None:  # codec/reader.py, the same dict
        for _ in range(rounds):
            for data in encoded:
                codec.decode_record(data)

    total = rounds * len(events)
    encode_rate = _timed(f"AccountEvent encode ({size // len(events)} bytes each)", total, encode_all)
    decode_rate = _timed("AccountEvent decode", total, decode_all)
    baseline = _timed("AccountEvent to its record: fastavro's reader", total, fastavro_records)
    generated = _timed("AccountEvent to its record: generated reader", total, generated_records)
    print(f"  generated reader ÷ fastavro's reader, same run: {generated / baseline:.2f} times")
    average = size / len(events)
    print(
        f"  Avro event throughput: encode {encode_rate * average / 1e6:.1f} MB/s, "
        f"decode {decode_rate * average / 1e6:.1f} MB/s"
    )


if __name__ == "__main__":
    main()
