"""The whole path on real parts: a worker, the query service and the gateway as separate
processes, a real broker, commands from a confluent-kafka producer and over HTTP. Run twice:
on the plaintext broker, and on the secured one (SASL_SSL and ACLs), where every process and
the producer log in as their own role's user."""

from __future__ import annotations

import collections
import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from codec import Codec
from foundation.settings import Settings
from ledger.events import CommandResult
from streamwallet.stack import Stack
from tests.conftest import Deployment
from tests.credentials import Credentials
from tests.model import SingleAccountModel, single_account_workload
from tests.support import outcome, read_decoded
from topologies.access import Role

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("kafka_mode", ["plaintext", "secured"], indirect=True)]


def http(
    method: str, url: str, body: dict[str, Any] | None = None, *, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture
def stack(deployment: Deployment, tmp_path: Any) -> Iterator[Stack]:
    stack = deployment.stack(tmp_path)
    processes = [stack.worker(1).start(), stack.query().start(), stack.gateway().start()]
    try:
        for process in processes:
            process.wait_ready()
        yield stack
    finally:
        stack.stop_all()


def wait_for_results(settings: Settings, codec: Codec, command_ids: set[str], timeout_s: float = 60.0) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        results = read_decoded(settings, f"{settings.topic_prefix}.results", codec)
        if command_ids <= {result.command_id for result in results} or time.monotonic() > deadline:
            return results
        time.sleep(0.5)


def test_commands_from_kafka_and_http_get_exactly_one_result_and_agree_everywhere(
    deployment: Deployment, settings: Settings, stack: Stack
) -> None:
    codec = Codec()
    rng = random.Random(20261125)
    accounts = [f"acct-{uuid.uuid4().hex[:6]}-{index}" for index in range(40)]
    workload = single_account_workload(rng, accounts=accounts, count=1000, prefix=uuid.uuid4().hex[:8])
    model = SingleAccountModel()
    expected = {command.command_id: model.apply(command) for command in workload}

    producer = Producer(
        deployment.client(
            Role.COMMAND_PRODUCER,
            **{"partitioner": "murmur2_random", "acks": "all", "enable.idempotence": True},
        )
    )
    for command in workload:
        producer.produce(f"{settings.topic_prefix}.commands", codec.encode(command), command.routing_key.encode())
    producer.flush(30)

    # Over HTTP, on accounts of their own (the order between two producers is not defined).
    http_account = f"http-{uuid.uuid4().hex[:6]}"
    gateway = settings.gateway_url

    def gateway_http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return http(method, url, body, headers=Credentials(settings).headers("end-to-end"))

    status, opened = gateway_http(
        "POST",
        f"{gateway}/v1/commands",
        {
            "type": "OpenAccount",
            "dedup_id": "open",
            "account_id": http_account,
            "currency": "USD",
            "owner": "end-to-end",
        },
    )
    assert status == 200 and opened["status"] == "ACCEPTED", opened
    http_balance = 0
    for index in range(20):
        kind = "Deposit" if index % 3 else "Withdraw"
        status, result = gateway_http(
            "POST",
            f"{gateway}/v1/commands",
            {
                "type": kind,
                "dedup_id": f"h{index}",
                "account_id": http_account,
                "amount": f"{index}.25",
                "currency": "USD",
            },
        )
        if kind == "Deposit":
            http_balance += index * 100 + 25
            assert status == 200 and result["status"] == "ACCEPTED", result
        elif http_balance >= index * 100 + 25:
            http_balance -= index * 100 + 25
            assert status == 200 and result["status"] == "ACCEPTED", result
        else:  # a refusal is the error body with the ledger's code, the result in its details
            assert status == 409 and result["code"] == "INSUFFICIENT_FUNDS", result
            assert result["details"]["result"]["status"] == "REJECTED"
    status, repeated = gateway_http(
        "POST",
        f"{gateway}/v1/commands",
        {
            "type": "Deposit",
            "dedup_id": "h1",
            "account_id": http_account,
            "amount": "1.25",
            "currency": "USD",
        },
    )
    assert status == 200 and repeated["replayed"] is True
    status, bad = gateway_http(
        "POST",
        f"{gateway}/v1/commands",
        {
            "type": "Deposit",
            "dedup_id": "float",
            "account_id": http_account,
            "amount": 1.5,
            "currency": "USD",
        },
    )
    assert status == 400 and bad["code"] == "BAD_REQUEST" and "decimal string" in bad["message"], bad

    results = wait_for_results(settings, codec, set(expected))
    counts = collections.Counter(result.command_id for result in results)
    assert {command_id: counts[command_id] for command_id in expected} == dict.fromkeys(expected, 1)
    by_id: dict[str, CommandResult] = {result.command_id: result for result in results}
    mismatches = [
        (command_id, want, by_id[command_id].status.value, by_id[command_id].code)
        for command_id, want in expected.items()
        if (want.status, want.code, want.replayed) != outcome(by_id[command_id])
    ]
    assert not mismatches, mismatches[:10]
    assert any(want.replayed for want in expected.values()), "the workload must contain duplicates"

    latest_sequence: dict[str, int] = {}
    for result in results:
        for position in result.positions:
            latest_sequence[position.account_id] = max(latest_sequence.get(position.account_id, 0), position.sequence)
    worker_url = f"http://127.0.0.1:{settings.worker_web_port + 1}"
    for account, balance in [*model.balance.items(), (http_account, http_balance)]:
        status, table = http("GET", f"{worker_url}/accounts/{account}")
        assert status == 200, table
        assert table["account"]["balance"] == balance, account
        status, view = gateway_http("GET", f"{gateway}/v1/accounts/{account}?min_seq={latest_sequence[account]}")
        assert status == 200, view
        assert view["account"]["balance"] == balance, account
    status, history = gateway_http(
        "GET", f"{gateway}/v1/accounts/{http_account}/history?limit=5&min_seq={latest_sequence[http_account]}"
    )
    assert status == 200 and len(history["events"]) == 5, history
    assert history["events"][0]["balance"] == http_balance  # newest first
    status, totals = gateway_http("GET", f"{gateway}/v1/totals")
    assert status == 200, totals
    for account in set(accounts) - set(model.balance):
        status, _ = http("GET", f"{worker_url}/accounts/{account}")
        assert status == 404
    # The query service's reconciliation also reads the changelog (as the query user when secured).
    status, report = http("GET", f"{settings.query_url}/reconcile")
    assert status == 200 and report["ok"], report
