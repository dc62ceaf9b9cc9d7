"""kill -9 of the worker in the middle of a stream of commands, several times, at random
moments: no command is lost or applied twice, and the state comes back from RocksDB
(and, once, from the changelog alone after the local state is wiped). Run on the plaintext
broker and on the secured one, where the worker and the producer log in as their roles."""

from __future__ import annotations

import collections
import random
import shutil
import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer

from codec import Codec
from foundation.settings import Settings
from ledger import commands
from ledger.events import AccountEvent, CommandResult
from tests.conftest import Deployment
from tests.integration.test_end_to_end import http, wait_for_results
from tests.model import SingleAccountModel
from tests.principals import TESTER
from tests.support import outcome, read_decoded
from topologies.access import Role

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("kafka_mode", ["plaintext", "secured"], indirect=True)]

COMMANDS = 4000
RATE_PER_S = 600
KILLS = 4


def test_kill_minus_nine_loses_nothing_and_doubles_nothing(
    deployment: Deployment, settings: Settings, tmp_path: Any
) -> None:
    codec = Codec()
    rng = random.Random(9)
    stack = deployment.stack(tmp_path)
    worker = stack.worker(1).start()
    try:
        worker.wait_ready()
        run = uuid.uuid4().hex[:6]
        accounts = [f"k-{run}-{index}" for index in range(40)]
        workload: list[commands.Command] = [
            commands.OpenAccount(
                principal=TESTER,
                owner=TESTER.principal_id,
                command_id=f"{run}-open-{account}",
                dedup_id="open",
                account_id=account,
                currency="USD",
            )
            for account in accounts
        ]
        for index in range(COMMANDS):
            account = rng.choice(accounts)
            if index % 10 == 9:  # a retry of an earlier command: must change nothing
                original = rng.choice(workload[len(accounts) :] or workload)
                fields = {name: getattr(original, name) for name in original.__dataclass_fields__}
                workload.append(type(original)(**{**fields, "command_id": f"{run}-{index}"}))
                continue
            kind = commands.Deposit if rng.random() < 0.6 else commands.Withdraw
            workload.append(
                kind(
                    principal=TESTER,
                    command_id=f"{run}-{index}",
                    dedup_id=f"d{index}",
                    account_id=account,
                    amount=rng.randint(1, 500),
                    currency="USD",
                )
            )
        model = SingleAccountModel()
        expected = {command.command_id: model.apply(command) for command in workload}

        producer = Producer(
            deployment.client(
                Role.COMMAND_PRODUCER,
                **{"partitioner": "murmur2_random", "acks": "all", "enable.idempotence": True, "linger.ms": 5},
            )
        )

        def stream() -> None:
            for index, command in enumerate(workload):
                producer.produce(
                    f"{settings.topic_prefix}.commands", codec.encode(command), command.routing_key.encode()
                )
                if index % 50 == 0:
                    producer.poll(0)
                    time.sleep(50 / RATE_PER_S)
            producer.flush(30)

        streaming = threading.Thread(target=stream)
        streaming.start()
        for kill in range(KILLS):
            time.sleep(rng.uniform(0.8, 2.0))
            worker.kill()
            if kill == KILLS - 1:
                # The last time the local RocksDB goes too: the state must come from the changelog alone.
                shutil.rmtree(settings.data_dir / "ledger", ignore_errors=True)
            worker.start()
            worker.wait_ready()
        streaming.join()

        results: list[CommandResult] = wait_for_results(settings, codec, set(expected), timeout_s=120)
        counts = collections.Counter(result.command_id for result in results)
        assert [command_id for command_id in expected if counts[command_id] != 1] == []
        by_id = {result.command_id: result for result in results}
        wrong = [
            command_id
            for command_id, want in expected.items()
            if (want.status, want.code, want.replayed) != outcome(by_id[command_id])
        ]
        assert wrong == []

        events: list[AccountEvent] = read_decoded(settings, f"{settings.topic_prefix}.events", codec)
        per_account: dict[str, list[AccountEvent]] = collections.defaultdict(list)
        for event in events:
            per_account[event.account_id].append(event)
        worker_url = f"http://127.0.0.1:{settings.worker_web_port + 1}"
        for account in accounts:
            history = per_account[account]
            assert [event.sequence for event in history] == list(range(1, len(history) + 1)), account
            assert sum(event.amount for event in history) == model.balance[account] == history[-1].balance
            status, table = http("GET", f"{worker_url}/accounts/{account}")
            assert status == 200 and table["account"]["balance"] == model.balance[account]
            assert table["account"]["sequence"] == len(history)
    finally:
        stack.stop_all()
