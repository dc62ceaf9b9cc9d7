"""The experiment that chose the exactly-once route (README, design): the same stream of
deposits through (1) Faust's own exactly-once and (2) streamwallet's transactional loop,
each worker killed with kill -9 several times at random moments and restarted.
Afterwards, per account: was every deposit applied exactly once (table and outputs)?

    python -m bench.route_evidence [--deposits 3000] [--kills 4] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from codec import Codec
from deploy.local import kafka
from foundation.settings import Settings
from ledger import commands
from streamwallet.stack import Stack
from tests.support import read_decoded, read_topic
from topologies import Topology
from topologies.admin import ensure_topics

ACCOUNTS = 20


def stream(send: object, count: int, rate: float) -> threading.Thread:
    def run() -> None:
        for index in range(count):
            send(index)  # type: ignore[operator]
            time.sleep(1 / rate)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def faust_native(bootstrap: str, deposits: int, kills: int, rng: random.Random, run_dir: Path) -> dict[str, int]:
    prefix = f"fn{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(
        [NewTopic(f"{prefix}.faust-deposits", 8, 1), NewTopic(f"{prefix}.faust-applied", 8, 1)]
    ).values():
        future.result()
    environment = {
        **os.environ,
        "STREAMWALLET_TOPIC_PREFIX": prefix,
        "STREAMWALLET_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMWALLET_DATA_DIR": str(run_dir / "faust"),
        "STREAMWALLET_WORKER_WEB_PORT": "16199",
    }
    log = open(run_dir / "faust-native.log", "ab")  # noqa: SIM115 - kept open across restarts

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.faust_native", "worker"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    worker = start()
    time.sleep(12)  # Faust's start-up and first rebalance
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "acks": "all"})

    def send(index: int) -> None:
        producer.produce(f"{prefix}.faust-deposits", b"c%d:1" % index, b"acct-%d" % (index % ACCOUNTS))
        producer.poll(0)

    feeder = stream(send, deposits, rate=300)
    for _ in range(kills):
        time.sleep(rng.uniform(1.0, 3.0))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = start()
    feeder.join()
    producer.flush(30)
    time.sleep(40)  # let it finish: sessions of killed members expire, recovery completes
    crashed = worker.poll() is not None
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    outputs = read_topic(bootstrap, f"{prefix}.faust-applied")
    applied = collections.Counter(message.value().split(b":")[0] for message in outputs)
    final_balance: dict[bytes, int] = {}
    for message in outputs:
        final_balance[message.key()] = int(message.value().split(b":")[1])
    # The changelog of the table is what the table would be restored to.
    changelog = read_topic(bootstrap, f"{prefix}-faust-native-balances-changelog")
    table: dict[bytes, int] = {}
    for message in changelog:
        table[message.key()] = int(message.value() or b"0")
    expected = deposits // ACCOUNTS
    return {
        "deposits sent": deposits,
        "worker dead at the end": int(crashed),
        "outputs missing": sum(1 for index in range(deposits) if applied[b"c%d" % index] == 0),
        "outputs duplicated": sum(count - 1 for count in applied.values() if count > 1),
        "accounts whose table balance is wrong": sum(1 for value in table.values() if value != expected)
        + (ACCOUNTS - len(table)),
        "table total minus deposits": sum(table.values()) - deposits,
    }


def streamwallet_route(bootstrap: str, deposits: int, kills: int, rng: random.Random, run_dir: Path) -> dict[str, int]:
    settings = dataclasses.replace(
        Settings.from_environment({}),
        bootstrap_servers=bootstrap,
        topic_prefix=f"sw{uuid.uuid4().hex[:6]}",
        data_dir=run_dir / "data",
        worker_web_port=16200,
    )
    ensure_topics({"bootstrap.servers": bootstrap}, Topology(prefix=settings.topic_prefix))
    codec = Codec()
    stack = Stack(settings, run_dir)
    worker = stack.worker(1).start()
    worker.wait_ready()
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "acks": "all"})
    topic = f"{settings.topic_prefix}.commands"
    for account in range(ACCOUNTS):
        command = commands.OpenAccount(
            command_id=f"o{account}", dedup_id="o", account_id=f"acct-{account}", currency="USD"
        )
        producer.produce(topic, codec.encode(command), command.routing_key.encode())

    def send(index: int) -> None:
        command = commands.Deposit(
            command_id=f"c{index}",
            dedup_id=f"c{index}",
            account_id=f"acct-{index % ACCOUNTS}",
            amount=1,
            currency="USD",
        )
        producer.produce(topic, codec.encode(command), command.routing_key.encode())
        producer.poll(0)

    feeder = stream(send, deposits, rate=300)
    for _ in range(kills):
        time.sleep(rng.uniform(1.0, 3.0))
        worker.kill()
        worker.start()
        worker.wait_ready()
    feeder.join()
    producer.flush(30)
    time.sleep(10)
    results = read_decoded(bootstrap, f"{settings.topic_prefix}.results", codec)
    answered = collections.Counter(result.command_id for result in results)
    events = read_decoded(bootstrap, f"{settings.topic_prefix}.events", codec)
    latest: dict[str, int] = {}
    for event in events:
        latest[event.account_id] = event.balance
    expected = deposits // ACCOUNTS
    crashed = not worker.alive
    stack.stop_all()
    return {
        "deposits sent": deposits,
        "worker dead at the end": int(crashed),
        "outputs missing": sum(1 for index in range(deposits) if answered[f"c{index}"] == 0),
        "outputs duplicated": sum(count - 1 for count in answered.values() if count > 1),
        "accounts whose table balance is wrong": sum(1 for value in latest.values() if value != expected)
        + (ACCOUNTS - len(latest)),
        "table total minus deposits": sum(latest.values()) - deposits,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deposits", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    bootstrap = os.environ.get("STREAMWALLET_BOOTSTRAP_SERVERS")
    if bootstrap is None:
        bootstrap = kafka.start(name="dev").bootstrap_servers
    run_dir = Path(tempfile.mkdtemp(prefix="route-evidence-"))
    rows = {
        "Faust exactly_once": faust_native(bootstrap, args.deposits, args.kills, random.Random(args.seed), run_dir),
        "streamwallet loop": streamwallet_route(
            bootstrap, args.deposits, args.kills, random.Random(args.seed), run_dir
        ),
    }
    metrics = list(next(iter(rows.values())))
    print(
        f"\n{args.deposits} deposits of 1 over {ACCOUNTS} accounts, {args.kills} x kill -9 of the worker "
        f"(logs: {run_dir})"
    )
    print(f"{'':<40}" + "".join(f"{name:>22}" for name in rows))
    for metric in metrics:
        print(f"{metric:<40}" + "".join(f"{rows[name][metric]:>22}" for name in rows))


if __name__ == "__main__":
    main()
