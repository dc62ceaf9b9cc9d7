"""The experiment that chose the exactly-once route (README, design): the same stream of
deposits through (1) Faust's own exactly-once and (2) streamwallet's transactional loop,
each worker killed with kill -9 several times at random moments and restarted.
Afterwards, per account: was every deposit applied exactly once (table and outputs)?

    python -m bench.route_evidence [--deposits 3000] [--kills 4] [--seed 1] [--json PATH]

Both routes go through one procedure (`run_route`), so neither is treated better:

* ready: the worker answers a probe on every partition (Faust: a deposit of 0 to a probe
  account; streamwallet: opening a probe account) before the feed starts;
* deposits of 1 over 20 accounts at FEED_RATE_PER_S, for at least --deposits deposits and
  until the last restarted worker is back, so every kill lands under load;
* each kill -9 is followed by a restart and a wait (up to RECOVERY_TIMEOUT_S) until the new
  worker answers a probe on every partition; how long that took is reported;
* at the end, a wait (up to DRAIN_TIMEOUT_S) until every deposit has its output;
* then outputs (the output topic) and the table, read from the table's changelog, which is
  what a worker restores: Faust's `balances` changelog, streamwallet's accounts table in
  `<prefix>.changelog`.
"""

from __future__ import annotations

import abc
import argparse
import collections
import dataclasses
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

from confluent_kafka import Producer

from bench.faust_worker import FaustWorker, command_id_of_output
from bench.principal import BENCH_PRINCIPAL
from bench.run_topics import create_topics, delete_prefixed
from bench.topics import Outputs, changelog_state, read_topic
from bench.workloads import one_key_per_partition
from codec import Codec
from deploy.local import kafka
from foundation.settings import Settings
from ledger import commands
from ledger.state import Table
from streamwallet.stack import ManagedProcess, Stack

ACCOUNTS = 20
PARTITIONS = 8
FEED_RATE_PER_S = 300.0
KILL_DELAY_S_MIN = 1.0
KILL_DELAY_S_MAX = 3.0
READY_TIMEOUT_S = 180.0
RECOVERY_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 60.0
FLUSH_TIMEOUT_S = 30.0
FAUST_WEB_PORT = 16199
STREAMWALLET_WEB_PORT = 16200


class RouteNotReady(Exception):
    """A route's worker never answered at start: the experiment cannot run."""


class WorkerProcess(Protocol):
    """A worker a route runs in: Faust's (FaustWorker) or streamwallet's (ManagedProcess)."""

    @property
    def alive(self) -> bool: ...

    def start(self) -> object: ...

    def kill(self) -> None: ...

    def stop(self) -> object: ...


def account_of(index: int) -> str:
    return f"acct-{index % ACCOUNTS}"


class Route(abc.ABC):
    """One exactly-once route under test: its worker process, how to feed it, and how to read
    what it did."""

    name: ClassVar[str]

    def __init__(self, *, worker: WorkerProcess, producer: Producer) -> None:
        self.worker = worker
        self.producer = producer

    @property
    def alive(self) -> bool:
        return self.worker.alive

    def start(self) -> None:
        self.worker.start()

    def kill(self) -> None:
        """kill -9"""
        self.worker.kill()

    def stop(self) -> None:
        self.worker.stop()

    def flush(self) -> None:
        self.producer.flush(FLUSH_TIMEOUT_S)

    @abc.abstractmethod
    def prepare(self, outputs: Outputs) -> None:
        """Whatever must exist before the first deposit."""

    @property
    @abc.abstractmethod
    def bootstrap_servers(self) -> str: ...

    @property
    @abc.abstractmethod
    def outputs_topic(self) -> str: ...

    @property
    @abc.abstractmethod
    def topic_prefix(self) -> str:
        """What every topic of the route's run is named after (deleted when the run ends)."""

    @abc.abstractmethod
    def output_id(self, message: Any) -> bytes | None:
        """The command id an output answers."""

    @abc.abstractmethod
    def send_deposit(self, *, command_id: str, account: str) -> None:
        """A deposit of 1."""

    @abc.abstractmethod
    def send_probe(self, *, command_id: str, key: str) -> None:
        """A command the worker answers, routed by `key`, that changes no counted account."""

    @abc.abstractmethod
    def table_balances(self) -> dict[str, int]:
        """account -> balance, as the table's changelog holds it."""


class FaustRoute(Route):
    name = "Faust exactly_once"

    def __init__(self, *, faust: FaustWorker, producer: Producer) -> None:
        super().__init__(worker=faust, producer=producer)
        self.faust = faust

    @property
    def bootstrap_servers(self) -> str:
        return self.faust.bootstrap_servers

    @property
    def outputs_topic(self) -> str:
        return self.faust.outputs_topic

    @property
    def topic_prefix(self) -> str:
        return self.faust.prefix  # its app id too: the changelog and Faust's internal topics

    def output_id(self, message: Any) -> bytes | None:
        return command_id_of_output(message)

    def send_deposit(self, *, command_id: str, account: str) -> None:
        self.faust.deposit(self.producer, command_id=command_id.encode(), account=account.encode(), amount=1)

    def send_probe(self, *, command_id: str, key: str) -> None:
        self.faust.deposit(self.producer, command_id=command_id.encode(), account=key.encode(), amount=0)

    def prepare(self, outputs: Outputs) -> None:
        """Nothing: the Faust table starts every account at 0."""

    def table_balances(self) -> dict[str, int]:
        table: dict[str, int] = {}
        for message in read_topic(self.faust.bootstrap_servers, self.faust.changelog_topic):
            key = message.key().decode()  # the table's keys are raw bytes, its values JSON
            if message.value() is None:
                table.pop(key, None)
            else:
                table[key] = int(json.loads(message.value()))
        return table


class StreamwalletRoute(Route):
    name = "streamwallet loop"

    def __init__(self, *, settings: Settings, worker: ManagedProcess, producer: Producer, codec: Codec) -> None:
        super().__init__(worker=worker, producer=producer)
        self.settings = settings
        self.codec = codec

    @property
    def bootstrap_servers(self) -> str:
        return self.settings.bootstrap_servers

    @property
    def outputs_topic(self) -> str:
        return f"{self.settings.topic_prefix}.results"

    @property
    def topic_prefix(self) -> str:
        return self.settings.topic_prefix

    def output_id(self, message: Any) -> bytes | None:
        key: bytes | None = message.key()  # a result is keyed by its command id
        return key

    def _send(self, command: commands.Command) -> None:
        self.producer.produce(
            f"{self.settings.topic_prefix}.commands", self.codec.encode(command), command.routing_key.encode()
        )
        self.producer.poll(0)

    def send_deposit(self, *, command_id: str, account: str) -> None:
        self._send(
            commands.Deposit(
                principal=BENCH_PRINCIPAL,
                command_id=command_id,
                dedup_id=command_id,
                account_id=account,
                amount=1,
                currency="USD",
            )
        )

    def send_probe(self, *, command_id: str, key: str) -> None:
        self._send(
            commands.OpenAccount(
                principal=BENCH_PRINCIPAL,
                owner=BENCH_PRINCIPAL.principal_id,
                command_id=command_id,
                dedup_id=command_id,
                account_id=key,
                currency="USD",
            )
        )

    def prepare(self, outputs: Outputs) -> None:
        """Open the accounts."""
        openings = [f"open-{account}" for account in (account_of(index) for index in range(ACCOUNTS))]
        for index, command_id in enumerate(openings):
            self._send(
                commands.OpenAccount(
                    principal=BENCH_PRINCIPAL,
                    owner=BENCH_PRINCIPAL.principal_id,
                    command_id=command_id,
                    dedup_id="open",
                    account_id=account_of(index),
                    currency="USD",
                )
            )
        self.flush()
        if not outputs.wait_for([command_id.encode() for command_id in openings], timeout_s=READY_TIMEOUT_S):
            raise RouteNotReady(f"{self.name}: the accounts were not opened within {READY_TIMEOUT_S:.0f}s")

    def table_balances(self) -> dict[str, int]:
        accounts = changelog_state(self.settings, self.codec)[Table.ACCOUNTS]
        return {account_id: account.balance for account_id, account in accounts.items()}


def answers_on_every_partition(route: Route, outputs: Outputs, *, round_name: str, timeout_s: float) -> float | None:
    """Probe every partition and wait for every answer: the seconds it took, or None when the
    route did not answer within `timeout_s` (or its worker exited)."""
    started = time.monotonic()
    probes = {
        f"probe-{round_name}-p{partition}": key
        for partition, key in enumerate(one_key_per_partition(f"probe-{round_name}", PARTITIONS))
    }
    for command_id, key in probes.items():
        route.send_probe(command_id=command_id, key=key)
    route.flush()
    answered = outputs.wait_for(
        [command_id.encode() for command_id in probes], timeout_s=timeout_s, still_worth_waiting=lambda: route.alive
    )
    return time.monotonic() - started if answered else None


class Feeder:
    """Deposits at a fixed rate on a thread: at least `minimum`, and until told to stop."""

    def __init__(self, send: Callable[[int], None], *, minimum: int, rate_per_s: float) -> None:
        self.sent = 0
        self._send = send
        self._minimum = minimum
        self._interval_s = 1 / rate_per_s
        self._enough = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder")
        self._thread.start()

    def _run(self) -> None:
        while self.sent < self._minimum or not self._enough.is_set():
            self._send(self.sent)
            self.sent += 1
            time.sleep(self._interval_s)

    def finish(self) -> int:
        """Stop once the minimum is sent; the number of deposits sent."""
        self._enough.set()
        self._thread.join()
        return self.sent


def run_route(route: Route, outputs: Outputs, *, deposits: int, kills: int, rng: random.Random) -> dict[str, Any]:
    route.start()
    if answers_on_every_partition(route, outputs, round_name="start", timeout_s=READY_TIMEOUT_S) is None:
        raise RouteNotReady(f"{route.name}: no answer on every partition within {READY_TIMEOUT_S:.0f}s of its start")
    route.prepare(outputs)
    feeder = Feeder(
        lambda index: route.send_deposit(command_id=f"c{index}", account=account_of(index)),
        minimum=deposits,
        rate_per_s=FEED_RATE_PER_S,
    )
    recoveries: list[float | None] = []
    try:
        for kill in range(kills):
            time.sleep(rng.uniform(KILL_DELAY_S_MIN, KILL_DELAY_S_MAX))
            route.kill()
            route.start()
            recoveries.append(
                answers_on_every_partition(route, outputs, round_name=f"kill{kill}", timeout_s=RECOVERY_TIMEOUT_S)
            )
    finally:
        sent = feeder.finish()
    route.flush()
    deposit_ids = [f"c{index}".encode() for index in range(sent)]
    outputs.wait_for(deposit_ids, timeout_s=DRAIN_TIMEOUT_S, still_worth_waiting=lambda: route.alive)
    dead_at_the_end = not route.alive
    route.stop()
    return judged(route, sent=sent, recoveries=recoveries, dead_at_the_end=dead_at_the_end)


def judged(route: Route, *, sent: int, recoveries: list[float | None], dead_at_the_end: bool) -> dict[str, Any]:
    """Outputs read from the output topic, balances from the table's changelog."""
    outputs = read_topic(route.bootstrap_servers, route.outputs_topic)
    answered = collections.Counter(route.output_id(message) for message in outputs)
    deposit_ids = [f"c{index}".encode() for index in range(sent)]
    table = route.table_balances()
    expected = collections.Counter(account_of(index) for index in range(sent))
    back = [seconds for seconds in recoveries if seconds is not None]
    return {
        "deposits sent": sent,
        f"restarts answering within {RECOVERY_TIMEOUT_S:.0f} s": f"{len(back)} of {len(recoveries)}",
        "slowest recovery, s": round(max(back), 1) if back else None,
        "worker dead at the end": int(dead_at_the_end),
        "outputs missing": sum(1 for command_id in deposit_ids if answered[command_id] == 0),
        "outputs duplicated": sum(answered[command_id] - 1 for command_id in deposit_ids if answered[command_id] > 1),
        "accounts whose table balance is wrong": sum(
            1 for account, count in expected.items() if table.get(account) != count
        ),
        "table total minus deposits": sum(table.get(account, 0) for account in expected) - sent,
    }


def faust_route(bootstrap: str, run_dir: Path) -> FaustRoute:
    worker = FaustWorker(
        bootstrap_servers=bootstrap,
        prefix=f"fn{uuid.uuid4().hex[:6]}",
        partitions=PARTITIONS,
        run_dir=run_dir,
        web_port=FAUST_WEB_PORT,
    )
    worker.create_topics()
    return FaustRoute(faust=worker, producer=route_producer(bootstrap))


def streamwallet_route(bootstrap: str, run_dir: Path) -> StreamwalletRoute:
    settings = dataclasses.replace(
        Settings.from_environment({}),
        bootstrap_servers=bootstrap,
        topic_prefix=f"sw{uuid.uuid4().hex[:6]}",
        partitions=PARTITIONS,
        data_dir=run_dir / "data",
        worker_web_port=STREAMWALLET_WEB_PORT,
    )
    create_topics(settings)  # deleted when the route's run ends (`measured_route`)
    worker = Stack(settings, run_dir).worker(1)
    return StreamwalletRoute(settings=settings, worker=worker, producer=route_producer(bootstrap), codec=Codec())


def route_producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "acks": "all"})


def measured_route(route: Route, *, deposits: int, kills: int, seed: int) -> dict[str, Any]:
    outputs = Outputs(route.bootstrap_servers, route.outputs_topic, id_of=route.output_id)
    try:
        return run_route(route, outputs, deposits=deposits, kills=kills, rng=random.Random(seed))
    finally:
        route.stop()
        outputs.close()
        delete_prefixed(route.bootstrap_servers, route.topic_prefix)  # the run's own (bench/run_topics.py)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deposits", type=int, default=3000, help="at least this many deposits per route")
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("STREAMWALLET_BOOTSTRAP_SERVERS")
    if bootstrap is None:
        bootstrap = kafka.start(name="dev").bootstrap_servers
    run_dir = Path(tempfile.mkdtemp(prefix="route-evidence-"))
    rows: dict[str, dict[str, Any]] = {}
    try:
        for make_route in (faust_route, streamwallet_route):  # each made when its turn comes: its topics too
            route = make_route(bootstrap, run_dir / make_route.__name__.removesuffix("_route"))
            rows[route.name] = measured_route(route, deposits=args.deposits, kills=args.kills, seed=args.seed)
    except RouteNotReady as failure:
        print(f"bench.route_evidence FAILED: {failure} (logs: {run_dir})", file=sys.stderr)
        return 1
    print(
        f"\nat least {args.deposits} deposits of 1 over {ACCOUNTS} accounts at {FEED_RATE_PER_S:.0f}/s, "
        f"{args.kills} x kill -9 of the worker, each restart awaited (logs: {run_dir})"
    )
    print(f"{'':<40}" + "".join(f"{name:>22}" for name in rows))
    for metric in next(iter(rows.values())):
        print(
            f"{metric:<40}"
            + "".join(f"{'—' if rows[name][metric] is None else rows[name][metric]!s:>22}" for name in rows)
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
