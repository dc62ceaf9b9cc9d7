"""The HTTP API as a contract, on real parts: a worker, the query service and the gateway
as separate processes against a real broker. Reads of ids full of reserved characters,
no input that leaks a pending slot, Idempotency-Key, asynchronous submit, the outcome of
a command, and schemathesis against the served OpenAPI document.

One stack serves the whole module.
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from confluent_kafka import Consumer

import gateway.client
from codec import EncodeError
from gateway.client import LedgerClient
from ledger import commands
from tests.client_statistics import ClientStatistics
from tests.gateway_api import Api, gateway_stack, open_with_balance, quoted
from tests.principals import TESTER

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with gateway_stack(kafka_bootstrap, tmp_path_factory.mktemp("gateway-contract")) as api:
        yield api


def test_reads_of_ids_with_reserved_characters_answer_that_account_and_reach_nothing_else(api: Api) -> None:
    """Defect: the gateway rebuilt the query URL from the decoded path, so `x?y` was read as
    `x`, `p#q` as `p`, `%41` as `A`, and an encoded `../` reached the query service's
    internal endpoints."""
    run = uuid.uuid4().hex[:6]
    pairs = [("x", "x?y"), ("p", "p#q"), ("A", "%41"), ("a", "a/b"), ("d", "d/..")]
    for index, (plain, tricky) in enumerate(pairs):
        for offset, account_id in enumerate((f"{run}{plain}", f"{run}{tricky}")):
            amount = 100 * (index + 1) + offset
            sequence = open_with_balance(api, account_id, amount)
            status, body, _ = api.read(f"/v1/accounts/{quoted(account_id)}?min_seq={sequence}")
            assert status == 200, (account_id, body)
            assert body["account"]["account_id"] == account_id and body["account"]["balance"] == amount, body
            status, page, _ = api.read(f"/v1/accounts/{quoted(account_id)}/history?min_seq={sequence}")
            assert status == 200 and page["account_id"] == account_id, page
            assert [event["balance"] for event in page["events"]] == [amount, 0], page

    for hostile in ("../reconcile", "../../metrics", "../../admin/rebuild", "..", ".", "x y", "ünïcødé", "a?b#c"):
        for suffix in ("", "/history", "/rollup", "/turnover"):
            status, body, _ = api.call("GET", f"/v1/accounts/{quoted(hostile)}{suffix}")
            assert status == 404, (hostile, suffix, status, body)
            assert body["code"] == "ACCOUNT_NOT_FOUND" and body["details"]["account_id"] == hostile, body
    for raw in ("/v1/accounts/..%2F..%2Freconcile", "/v1/accounts/%2E%2E/%2E%2E/metrics", "/v1/reconcile"):
        status, body, _ = api.call("GET", raw)
        assert status == 404 and body["code"] in {"ACCOUNT_NOT_FOUND", "NOT_FOUND"}, (raw, body)
    status, body, _ = api.call("POST", "/v1/accounts/..%2F..%2Fadmin%2Frebuild")
    assert status == 405 and body["code"] == "METHOD_NOT_ALLOWED", body


def test_a_command_the_codec_cannot_carry_releases_its_pending_slot(api: Api) -> None:
    """Defect: `submit` registered the result's future before the codec refused the command,
    so each such request kept a slot for good; here 3 slots would be gone after 3."""
    client = LedgerClient(api.settings, pending_max=3)
    try:
        for index in range(10):
            hostile = commands.Deposit(
                command_id=f"leak-{uuid.uuid4().hex[:8]}-{index}",
                dedup_id=f"leak-{index}",
                account_id="leaky",
                amount=2**64 + index,
                currency="USD",
            )
            with pytest.raises(EncodeError):
                client.submit(hostile)
        assert client.pending() == 0
        opened = client.request(
            commands.OpenAccount(
                principal=TESTER,
                command_id=f"open-{uuid.uuid4().hex}",
                dedup_id="open",
                account_id=f"leaky-{uuid.uuid4().hex[:6]}",
                currency="USD",
            )
        )
        assert opened.status.value == "ACCEPTED"
        assert client.pending() == 0
    finally:
        client.close()


HOSTILE_BODIES: list[Any] = [
    {"type": "Deposit", "dedup_id": "h", "account_id": "a", "amount_minor": 2**64, "currency": "USD"},
    {"type": "Deposit", "dedup_id": "h", "account_id": "a", "amount_minor": 10**30, "currency": "USD"},
    {"type": "Deposit", "command_id": 12, "dedup_id": "h", "account_id": "a", "amount": "1", "currency": "USD"},
    {"type": "Batch", "dedup_id": "h", "batch_id": "b", "legs": [{"account_id": "a", "currency": "USD"}] * 2},
    {
        "type": "PlaceHold",
        "dedup_id": "h",
        "account_id": "a",
        "hold_id": "h",
        "amount_minor": 1,
        "currency": "USD",
        "ttl_ms": 2**70,
    },
    {"type": "Deposit", "dedup_id": "h", "account_id": "a", "amount": "1", "currency": "USD", "metadata": {"k": "v"}},
    b"[" * 50_000 + b"]" * 50_000,
    b'{"type": "Deposit", "account_id": "\\udfff", "dedup_id": "h", "amount_minor": 1, "currency": "USD"}',
    b'{"amount_minor": ' + b"7" * 5000 + b"}",
    b"\xc3\x28",
]


def test_no_body_answers_a_5xx_or_keeps_a_pending_slot(api: Api) -> None:
    """Defects: these answered 500 (the codec's refusals, a leg without an amount, deep
    nesting) and each kept its pending slot."""
    for _round in range(3):
        for body in HOSTILE_BODIES:
            status, answer, _ = api.command(body)
            assert status < 500, (body if isinstance(body, dict) else body[:40], status, answer)
            assert set(answer) == {"code", "message", "details"} or answer.get("status") == "ACCEPTED", answer
    status, counters, _ = api.call("GET", "/v1/status")
    assert status == 200 and counters["pending"] == 0, counters


def test_idempotency_key_replays_the_original_and_refuses_another_body(api: Api) -> None:
    account = f"idem-{uuid.uuid4().hex[:6]}"
    open_with_balance(api, account, 1000)
    body = {"type": "Withdraw", "account_id": account, "amount": "2.50", "currency": "USD"}
    status, first, headers = api.command(body, headers={"Idempotency-Key": "pay-1"})
    assert status == 200 and first["status"] == "ACCEPTED" and not first["replayed"], first
    assert "Idempotent-Replayed" not in headers
    assert first["dedup_id"] == "pay-1"
    assert first["positions"][0] | {"sequence": 0} == {
        "account_id": account,
        "sequence": 0,
        "balance_minor": 750,
        "available_minor": 750,
        "currency": "USD",
        "balance": "7.50",
        "available": "7.50",
    }
    status, again, headers = api.command(body, headers={"Idempotency-Key": "pay-1"})
    assert status == 200 and again["replayed"] is True and headers["Idempotent-Replayed"] == "true", again
    assert again["original_command_id"] == first["command_id"] and again["positions"] == first["positions"]
    status, conflict, _ = api.command({**body, "amount": "3.00"}, headers={"Idempotency-Key": "pay-1"})
    assert status == 409 and conflict["code"] == "DEDUP_CONFLICT", conflict
    assert conflict["details"]["result"]["status"] == "REJECTED"
    status, read, _ = api.read(f"/v1/accounts/{quoted(account)}?min_seq={first['positions'][0]['sequence']}")
    assert status == 200 and read["account"]["balance"] == 750 and read["account"]["decimal"]["balance"] == "7.50"


def test_asynchronous_submit_answers_202_and_the_status_url_gives_the_outcome(api: Api) -> None:
    account = f"async-{uuid.uuid4().hex[:6]}"
    sequence = open_with_balance(api, account, 500)
    assert api.read(f"/v1/accounts/{account}?min_seq={sequence}")[0] == 200  # the view knows its currency
    body: dict[str, Any] = {"type": "Deposit", "account_id": account, "amount_minor": 5, "currency": "USD"}
    ways: list[tuple[str, str, dict[str, str]]] = [
        ("/v1/commands?wait=false", "dep/1?#", {}),
        ("/v1/commands", "dep-2", {"Prefer": "respond-async"}),
    ]
    for path, command_id, headers in ways:
        body["command_id"] = command_id
        status, pending, answer_headers = api.call("POST", path, {**body, "dedup_id": command_id}, headers=headers)
        assert status == 202 and pending["status"] == "PENDING", pending
        assert answer_headers["Location"] == pending["status_url"]
        quoted_id = command_id.replace("/", "%2F").replace("?", "%3F").replace("#", "%23")
        assert pending["status_url"] == f"/v1/commands/{quoted_id}?account_id={account}", pending
        outcome = None
        for _attempt in range(50):
            status, outcome, _ = api.call("GET", pending["status_url"])
            if status == 200 and outcome["status"] != "PENDING":
                break
        assert status == 200 and outcome is not None and outcome["status"] == "ACCEPTED", outcome
        assert outcome["command_id"] == body["command_id"] and outcome["positions"][0]["currency"] == "USD", outcome


def test_the_outcome_of_any_command_by_its_routing_key(api: Api) -> None:
    source, target = f"src-{uuid.uuid4().hex[:6]}", f"dst-{uuid.uuid4().hex[:6]}"
    open_with_balance(api, source, 1000)
    open_with_balance(api, target, 0)
    transfer = {
        "type": "Transfer",
        "dedup_id": "t1",
        "command_id": f"t-{uuid.uuid4().hex[:8]}",
        "from_account_id": source,
        "to_account_id": target,
        "amount": "1.00",
        "currency": "USD",
    }
    status, result, _ = api.command(transfer)
    assert status == 200 and result["status"] == "ACCEPTED", result
    for position in result["positions"]:  # the outcome takes the accounts' currencies from the view
        assert api.read(f"/v1/accounts/{position['account_id']}?min_seq={position['sequence']}")[0] == 200
    path = f"/v1/commands/{transfer['command_id']}"
    status, outcome, _ = api.call("GET", f"{path}?account_id={source}")
    assert status == 200 and outcome["command_id"] == transfer["command_id"], outcome
    assert {position["account_id"]: position["balance"] for position in outcome["positions"]} == {
        source: "9.00",
        target: "1.00",
    }
    refused = {**transfer, "dedup_id": "t2", "command_id": f"t-{uuid.uuid4().hex[:8]}", "amount": "99.00"}
    status, rejected, _ = api.command(refused)
    assert status == 409 and rejected["code"] == "INSUFFICIENT_FUNDS", rejected
    status, outcome, _ = api.call("GET", f"/v1/commands/{refused['command_id']}?account_id={source}")
    assert status == 200 and outcome["status"] == "REJECTED" and outcome["code"] == "INSUFFICIENT_FUNDS", outcome
    # Only through the routing key it was sent with; never found through another.
    for query in (f"?account_id={target}", "?account_id=nobody", "?account_id=a%20b"):
        status, missing, _ = api.call("GET", path + query)
        assert status == 404 and missing["code"] == "COMMAND_NOT_FOUND", missing
    for query in ("", "?account_id=", f"?account_id={source}&account_id={source}", f"?account_id={source}&x=1"):
        status, bad, _ = api.call("GET", path + query)
        assert status == 400 and bad["code"] in {"BAD_PARAMETER", "UNKNOWN_PARAMETER"}, (query, bad)
    status, counters, _ = api.call("GET", "/v1/status")
    assert counters["pending"] == 0, counters


def test_the_account_listing_pages_through_the_gateway_behind_an_opaque_cursor(api: Api) -> None:
    """Issue 11: `GET /v1/accounts?limit=&cursor=`: every account once, in id order, money with
    its decimals; a cursor the API did not give is 400 BAD_CURSOR; a page over the bound is
    PAGE_TOO_LARGE; an owner lists only its own accounts."""
    run = f"list-{uuid.uuid4().hex[:6]}"
    mine = sorted((f"{run}-{name}" for name in ("b", "a", "c?d", "e/f", "g.h")), key=str.encode)
    for index, account_id in enumerate(mine):
        sequence = open_with_balance(api, account_id, 100 + index)
        assert api.read(f"/v1/accounts/{quoted(account_id)}?min_seq={sequence}")[0] == 200
    listed: list[dict[str, Any]] = []
    cursor, pages = "", 0
    while True:
        status, page, _ = api.call("GET", f"/v1/accounts?limit=2{cursor and f'&cursor={cursor}'}")
        assert status == 200 and page["status"] == "ok" and len(page["accounts"]) <= 2, page
        listed += page["accounts"]
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
        assert not any(account["account_id"] in cursor for account in page["accounts"])
    ids = [account["account_id"] for account in listed]
    assert ids == sorted(ids, key=str.encode) and len(ids) == len(set(ids)) and pages == -(-len(ids) // 2)
    ours = [account for account in listed if account["account_id"].startswith(run)]
    assert [account["account_id"] for account in ours] == mine
    assert [account["decimal"]["balance"] for account in ours] == ["1.00", "1.01", "1.02", "1.03", "1.04"]
    for query, code in (
        ("cursor=not-one", "BAD_CURSOR"),
        ("cursor=a1.YWxpY2U%3D", "BAD_CURSOR"),  # padded: not as the API gives it
        ("cursor=%20", "BAD_CURSOR"),
        ("limit=1001", "PAGE_TOO_LARGE"),
        ("limit=0", "BAD_PARAMETER"),
        ("owner=has%20space", "BAD_PARAMETER"),
        ("after=x", "UNKNOWN_PARAMETER"),
    ):
        status, body, _ = api.call("GET", f"/v1/accounts?{query}")
        assert status == 400 and body["code"] == code, (query, body)
    # An owner lists its own accounts only (the tester's, here, are none of holder's); naming
    # another owner is refused.
    holder = api.as_principal("holder", ["OWNER"])
    status, body, _ = holder.call("GET", "/v1/accounts")
    assert status == 200 and body["accounts"] == [], body
    status, body, _ = holder.call("GET", "/v1/accounts?owner=tester")
    assert status == 403 and body["code"] == "FORBIDDEN", body
    status, body, _ = api.as_principal("tester", ["OWNER"]).call("GET", "/v1/accounts?limit=1000")
    assert status == 200 and {account["owner"] for account in body["accounts"]} == {"tester"}, body


def test_transport_errors_and_bounds_have_the_error_body(api: Api) -> None:
    cases: list[tuple[str, str, Any, dict[str, str], int, str]] = [
        ("GET", "/v1/nowhere", None, {}, 404, "NOT_FOUND"),
        ("DELETE", "/v1/commands", None, {}, 405, "METHOD_NOT_ALLOWED"),
        ("PUT", "/v1/accounts/a", None, {}, 405, "METHOD_NOT_ALLOWED"),
        (
            "POST",
            "/v1/commands",
            b"type=Deposit",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        ("POST", "/v1/commands", b" " * (256 * 1024 + 1), {}, 413, "BODY_TOO_LARGE"),
        ("POST", "/v1/commands?wait=maybe", {}, {}, 400, "BAD_PARAMETER"),
        ("POST", "/v1/commands?debug=1", {}, {}, 400, "UNKNOWN_PARAMETER"),
        ("GET", "/v1/accounts/a/history?limit=1001", None, {}, 400, "PAGE_TOO_LARGE"),
        ("GET", "/v1/accounts/a/history?limit=-1", None, {}, 400, "BAD_PARAMETER"),
        ("GET", "/v1/accounts/a/as-of?at=never", None, {}, 400, "BAD_PARAMETER"),
        ("GET", "/v1/accounts/a?min_seq=1e3", None, {}, 400, "BAD_PARAMETER"),
        ("GET", "/v1/totals?cut=yesterday", None, {}, 400, "BAD_PARAMETER"),
    ]
    for method, path, body, headers, status, code in cases:
        got, answer, answer_headers = api.call(method, path, body, headers=headers)
        assert (got, answer["code"]) == (status, code), (method, path, answer)
        assert set(answer) == {"code", "message", "details"}
        if status == 405:
            assert "Allow" in answer_headers


def test_every_operation_needs_a_credential_but_health_readiness_and_the_document(api: Api) -> None:
    status, spec, _ = api.with_headers({}).call("GET", "/v1/openapi.json")
    assert status == 200
    anonymous = api.with_headers({})
    for path, operations in spec["paths"].items():
        concrete = path.replace("{account_id}", "a").replace("{command_id}", "c") + (
            "?account_id=a" if "{command_id}" in path else ""
        )
        for method in operations:
            status, body, headers = anonymous.call(method.upper(), concrete, {} if method == "post" else None)
            if operations[method].get("security") == []:
                assert status == 200, (method, path, body)
                continue
            assert (status, body["code"]) == (401, "UNAUTHENTICATED"), (method, path, body)
            assert headers["WWW-Authenticate"] == 'Bearer realm="streamwallet"'
    # Unknown routes too: nothing about the API is learned without a credential.
    status, body, _ = anonymous.call("GET", "/v1/nowhere")
    assert (status, body["code"]) == (401, "UNAUTHENTICATED")


# -- schemathesis against the served document ------------------------------------------------------

# Bounded so the whole run takes about two minutes on a 2-core machine shared with the broker.
FUZZ_POSITIVE_EXAMPLES = 200  # over every operation
FUZZ_NEGATIVE_EXAMPLES = 200
FUZZ_COMMAND_EXAMPLES = 80  # more for POST /v1/commands, positive and negative (its bodies are the richest)
FUZZ_STATEFUL_SCENARIOS = 25
FUZZ_STATEFUL_STEPS_MAX = 6
# A schema-valid command may still be refused for what only state (or a rule no schema can
# say, such as a currency's decimal places) decides: the ledger's 404, 409, 422, and 429, and
# its 403 (FORBIDDEN) for money moved out of an account the principal does not own.
POSITIVE_STATUSES = ["2xx", "403", "404", "409", "422", "429"]


def fuzz_settings(examples: int, **keywords: Any) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same cases every run: a failure here is reproducible
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
        **keywords,
    )


def fuzz(
    schema: Any, mode: schemathesis.GenerationMode, examples: int, *, base_url: str, ran: collections.Counter[str]
) -> None:
    """Cases of every operation generated in one mode, each sent and checked with every
    check schemathesis has (no 5xx, status, content type, headers and body in the document,
    positive data accepted, negative data refused)."""

    @fuzz_settings(examples)
    @hypothesis.given(case=schema.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        ran[f"{mode.value} {case.operation.label}"] += 1
        case.call_and_validate(base_url=base_url)

    run()


def test_schemathesis_finds_no_5xx_no_answer_outside_the_document_and_no_leaked_slot(api: Api) -> None:
    """Authenticated as a principal with every role (so every operation can succeed); its
    `ignored_auth` check also sends each operation that succeeded without the credential
    and with an invalid one, and expects 401 or 403."""
    token = api.credentials.token("schemathesis")
    config = schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"bearer": {"bearer": token}}},
            "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES}},
            # A schema-valid cursor the API did not give is BAD_CURSOR, and an owner filter is
            # refused while the views carry no owners: 400s no schema can rule out.
            # A bulk request naming one command id twice is refused (400): JSON Schema cannot say
            # "unique by command_id" across the items of an array.
            "operations": [
                {
                    "include-path": "/v1/accounts",
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "400"]}},
                },
                {
                    "include-path": "/v1/commands/bulk",
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "400"]}},
                },
            ],
        }
    )
    schema = schemathesis.openapi.from_url(f"{api.url}/v1/openapi.json", config=config)
    ran: collections.Counter[str] = collections.Counter()
    started = time.monotonic()

    submit = schema["/v1/commands"]["POST"]
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        examples = FUZZ_POSITIVE_EXAMPLES if mode is schemathesis.GenerationMode.POSITIVE else FUZZ_NEGATIVE_EXAMPLES
        fuzz(schema, mode, examples, base_url=api.url, ran=ran)
        fuzz(submit, mode, FUZZ_COMMAND_EXAMPLES, base_url=api.url, ran=ran)

    class Scenarios(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            ran[f"stateful {case.operation.label}"] += 1
            return {"base_url": api.url}

    Scenarios.run(
        settings=fuzz_settings(FUZZ_STATEFUL_SCENARIOS, stateful_step_count=FUZZ_STATEFUL_STEPS_MAX),
    )

    total = sum(ran.values())
    print(f"\nschemathesis: {total} cases in {time.monotonic() - started:.0f} s")
    for label, count in sorted(ran.items()):
        print(f"  {count:5d}  {label}")
    assert total >= FUZZ_POSITIVE_EXAMPLES + FUZZ_NEGATIVE_EXAMPLES + 2 * FUZZ_COMMAND_EXAMPLES, ran
    status, counters, _ = api.call("GET", "/v1/status")
    assert status == 200 and counters["pending"] == 0, counters


def test_an_idle_client_does_not_ask_the_broker_for_results_hundreds_of_times_a_second(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect (issue 15): the gateway's results consumer waited at most 5 ms for a fetch, so
    an idle gateway asked the broker for results about 200 times a second, and every replica
    did. The broker answers a waiting fetch as soon as a commit's markers make results
    readable, so the wait bounds only the empty fetches: a longer one costs no latency."""
    statistics = ClientStatistics(interval_ms=200)
    monkeypatch.setattr(gateway.client, "Consumer", lambda config: Consumer({**config, **statistics.options()}))
    client = LedgerClient(api.settings)
    try:
        time.sleep(1.0)  # connected, assigned, fetching
        first = statistics.next_report(after=-1, serve=lambda: time.sleep(0.05))
        time.sleep(2.0)
        last = statistics.next_report(after=first, serve=lambda: time.sleep(0.05))
        (started_s, before), (ended_s, after) = statistics.requests(first, "Fetch"), statistics.requests(last, "Fetch")
        per_second = (after - before) / (ended_s - started_s)
        assert per_second < 50, f"{per_second:.0f} fetch requests a second from an idle client"
    finally:
        client.close()
