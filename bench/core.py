"""The domain core alone, on one core: how many commands per second the state machine
applies in-process (no Kafka, no RocksDB), and how fast events encode and decode.
The core must never be what limits the Kafka path.

    python -m bench.core [--commands 200000]
"""

from __future__ import annotations

import argparse
import gc
import io
import time
from collections.abc import Callable, Sequence

from fastavro import schemaless_reader

from bench.principal import BENCH_PRINCIPAL
from codec import Codec
from codec.avro import HEADER_LENGTH
from ledger import commands
from ledger.events import AccountEvent
from ledger.shard import Shard, ShardConfig
from ledger.state import InMemoryStore
from streams.processor import GC_THRESHOLDS

ACCOUNTS = 10_000


def _shard() -> Shard:
    shard = Shard(store=InMemoryStore(isolate=False), config=ShardConfig(), is_local=lambda _: True)
    for index in range(ACCOUNTS):
        shard.handle(
            commands.OpenAccount(
                principal=BENCH_PRINCIPAL,
                owner=BENCH_PRINCIPAL.principal_id,
                command_id=f"o{index}",
                dedup_id="o",
                account_id=f"a{index}",
                currency="USD",
            ),
            timestamp_ms=1,
        )
        shard.handle(
            commands.Deposit(
                principal=BENCH_PRINCIPAL,
                command_id=f"s{index}",
                dedup_id="s",
                account_id=f"a{index}",
                amount=10**12,
                currency="USD",
            ),
            timestamp_ms=1,
        )
    return shard


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
    _timed("transfers applied (same shard)", count, apply(transfers))

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
