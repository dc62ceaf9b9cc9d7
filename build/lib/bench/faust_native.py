"""Faust's own exactly-once, as a baseline and as evidence: the same deposit flow written
the Faust way (an agent, a RocksDB table backed by a changelog, an output topic) with
processing_guarantee="exactly_once". Run as a worker by bench/route_evidence.py and the
performance harness; not part of the product.

    python -m bench.faust_native worker     (configured by STREAMWALLET_* variables)
"""

from __future__ import annotations

import os
import sys
from typing import Any

import faust

PREFIX = os.environ.get("STREAMWALLET_TOPIC_PREFIX", "faustnative")
BOOTSTRAP = os.environ.get("STREAMWALLET_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PARTITIONS = int(os.environ.get("STREAMWALLET_PARTITIONS", "8"))

app = faust.App(
    f"{PREFIX}-faust-native",
    broker=f"kafka://{BOOTSTRAP}",
    processing_guarantee="exactly_once",
    store="rocksdb://",
    datadir=os.environ.get("STREAMWALLET_DATA_DIR", "/tmp/faust-native"),
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    web_port=int(os.environ.get("STREAMWALLET_WORKER_WEB_PORT", "6099")),
    broker_session_timeout=6,
    broker_commit_interval=0.1,
)
deposits = app.topic(
    f"{PREFIX}.faust-deposits",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=PARTITIONS,
)
applied = app.topic(
    f"{PREFIX}.faust-applied",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=PARTITIONS,
)
balances = app.Table("balances", default=int, partitions=PARTITIONS, key_type=bytes, value_type=int)


@app.agent(deposits)
async def apply_deposits(stream: Any) -> None:
    """value = b"<command id>:<amount>": add to the account's balance, emit the new balance."""
    async for event in stream.events():
        command_id, amount = event.value.split(b":")
        balances[event.key] += int(amount)
        await applied.send(key=event.key, value=b"%s:%d" % (command_id, balances[event.key]))


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *sys.argv[1:], "-l", "warn"]
    app.main()
