"""POST /v1/commands/bulk on real parts (a worker, the query service and the gateway as
processes, a real broker): one result per command in order, across partitions; the same
request again replays every result and changes nothing; a request with one bad command
is refused whole, with that command's code and index, and nothing of it is decided."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.limits import BULK_COMMANDS_MAX
from tests.gateway_api import Api, gateway_stack, quoted

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with gateway_stack(kafka_bootstrap, tmp_path_factory.mktemp("gateway-bulk")) as api:
        yield api


def bulk(api: Api, items: list[dict[str, Any]]) -> tuple[int, Any]:
    status, body, _ = api.call("POST", "/v1/commands/bulk", {"commands": items})
    return status, body


def test_each_command_has_its_own_result_and_a_repeat_changes_nothing(api: Api) -> None:
    run = uuid.uuid4().hex[:6]
    accounts = [f"{run}-{index}" for index in range(6)]  # spread over partitions
    setup: list[dict[str, Any]] = [
        # The API acts as "tester" (every role), which owns what it opens, so it may move money out.
        {"type": "OpenAccount", "dedup_id": "open", "account_id": account, "currency": "USD", "owner": "tester"}
        for account in accounts
    ]
    setup += [
        {"type": "Deposit", "dedup_id": "dep", "account_id": account, "amount_minor": 1_000, "currency": "USD"}
        for account in accounts
    ]
    status, body = bulk(api, setup)
    assert status == 200 and [result["status"] for result in body["results"]] == ["ACCEPTED"] * 12, body
    transfers = [
        {
            "type": "Transfer",
            "dedup_id": f"t{index}",
            "from_account_id": accounts[index],
            "to_account_id": accounts[(index + 1) % len(accounts)],
            "amount_minor": 400 if index else 5_000,  # the first finds too little money
            "currency": "USD",
        }
        for index in range(len(accounts))
    ]
    status, body = bulk(api, transfers)
    assert status == 200, body
    results = body["results"]
    assert [result["status"] for result in results] == ["REJECTED"] + ["ACCEPTED"] * 5, results
    assert results[0]["code"] == "INSUFFICIENT_FUNDS"
    status, again = bulk(api, transfers)
    assert status == 200, again
    assert [result["replayed"] for result in again["results"]] == [True] * len(transfers)
    assert [result["status"] for result in again["results"]] == [result["status"] for result in results]
    balances = {}
    for account in accounts:
        status, read, _ = api.read(f"/v1/accounts/{quoted(account)}?min_seq=3")
        assert status == 200, read
        balances[account] = read["account"]["balance"]
    # accounts[0]'s transfer was refused: accounts[1] only sent; accounts[0] only received.
    assert balances == {accounts[0]: 1_400, accounts[1]: 600, **dict.fromkeys(accounts[2:], 1_000)}, balances


def test_one_bad_command_refuses_the_request_and_sends_nothing(api: Api) -> None:
    run = uuid.uuid4().hex[:6]
    good = {"type": "OpenAccount", "dedup_id": "open", "account_id": f"{run}-a", "currency": "USD"}
    bad = {"type": "Deposit", "dedup_id": "d", "account_id": f"{run}-a", "amount_minor": 5}  # no currency
    status, body = bulk(api, [good, good | {"account_id": f"{run}-b"}, bad])
    assert status == 400 and body["code"] == "MISSING_FIELD" and body["details"]["index"] == 2, body
    status, body = bulk(api, [good])  # had the first been sent, this would be its replay
    assert status == 200 and body["results"][0]["status"] == "ACCEPTED", body
    assert body["results"][0]["replayed"] is False, body
    twice = good | {"command_id": f"{run}-same"}
    status, body = bulk(api, [twice, twice | {"account_id": f"{run}-c"}])
    assert (status, body["code"], body["details"]["field"], body["details"]["index"]) == (
        400,
        "BAD_REQUEST",
        "command_id",
        1,
    ), body


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"commands": []}, 400, "TOO_MANY_COMMANDS"),
        ({"commands": [{"type": "OpenAccount"}] * (BULK_COMMANDS_MAX + 1)}, 400, "TOO_MANY_COMMANDS"),
        ({"commands": {}}, 400, "BAD_REQUEST"),
        ({"commands": [], "extra": 1}, 400, "BAD_REQUEST"),
        ([], 400, "BAD_REQUEST"),
    ],
)
def test_bodies_that_are_not_a_bulk_request_answer_4xx(api: Api, body: Any, status: int, code: str) -> None:
    answered, answer, _ = api.call("POST", "/v1/commands/bulk", body)
    assert (answered, answer["code"]) == (status, code), answer
