"""The HTTP API as a contract, on real parts: a worker, the query service and the gateway
as separate processes against a real broker. Reads of ids full of reserved characters,
no input that leaks a pending slot, Idempotency-Key, asynchronous submit, the outcome of
a command, and schemathesis against the served OpenAPI document.

One stack serves the whole module.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from codec import EncodeError
from foundation.settings import Settings
from gateway.client import LedgerClient
from ledger import commands
from streamwallet.stack import Stack
from tests.conftest import fresh_settings

pytestmark = pytest.mark.kafka


@dataclasses.dataclass
class Api:
    settings: Settings
    stack: Stack

    @property
    def url(self) -> str:
        return self.settings.gateway_url

    def call(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, decoded JSON body, headers); `path` is sent exactly as given (already quoted)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw, status, answer_headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, answer_headers = error.read(), error.code, dict(error.headers)
        return status, json.loads(raw) if raw else None, answer_headers

    def command(self, body: dict[str, Any], **keywords: Any) -> tuple[int, Any, dict[str, str]]:
        return self.call("POST", "/v1/commands", body, **keywords)


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    run_dir = tmp_path_factory.mktemp("gateway-contract")
    settings = fresh_settings(kafka_bootstrap, run_dir, prefix="g")
    stack = Stack(settings, run_dir)
    processes = [stack.worker(1).start(), stack.query().start(), stack.gateway().start()]
    try:
        for process in processes:
            process.wait_ready()
        yield Api(settings, stack)
    finally:
        stack.stop_all()


def quoted(account_id: str) -> str:
    return urllib.parse.quote(account_id, safe="")


def open_with_balance(api: Api, account_id: str, amount_minor: int) -> int:
    """Open a USD account and deposit into it; the sequence of the deposit."""
    status, opened, _ = api.command(
        {"type": "OpenAccount", "dedup_id": "open", "account_id": account_id, "currency": "USD"}
    )
    assert status == 200 and opened["status"] == "ACCEPTED", opened
    status, deposited, _ = api.command(
        {
            "type": "Deposit",
            "dedup_id": "deposit",
            "account_id": account_id,
            "amount_minor": amount_minor,
            "currency": "USD",
        }
    )
    assert status == 200 and deposited["status"] == "ACCEPTED", deposited
    sequence: int = deposited["positions"][0]["sequence"]
    return sequence


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
            status, body, _ = api.call("GET", f"/v1/accounts/{quoted(account_id)}?min_seq={sequence}")
            assert status == 200, (account_id, body)
            assert body["account"]["account_id"] == account_id and body["account"]["balance"] == amount, body
            status, page, _ = api.call("GET", f"/v1/accounts/{quoted(account_id)}/history?min_seq={sequence}")
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
