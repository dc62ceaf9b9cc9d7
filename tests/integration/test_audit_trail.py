"""The audit trail end to end (issue 12, "Audit"), on real parts: a worker, the query
service and the gateway as separate processes against a real broker.

A scripted sequence of actions — an admin opens an account for alice, an operator locks
it (allowed, by the shard), alice tries to lock it through the gateway (403: refused by
the gateway), alice's LockAccount produced straight to Kafka (FORBIDDEN: refused by the
shard), an admin opens another account — then the trail is read back from the ClickHouse
audit table, through the query service's GET /audit and through its SQL endpoint: exactly
those five entries, in order, with their principals and outcomes. Nothing else done here
is privileged or denied (the reads of results and accounts are not audited). Then a
request without a credential (401) adds the anonymous principal's entry.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.client import LedgerClient
from ledger.commands import LockAccount
from ledger.errors import ErrorCode
from ledger.principals import Principal, Role
from tests.gateway_api import Api, gateway_stack

pytestmark = pytest.mark.kafka

TRAIL_WAIT_S_MAX = 60.0
TRAIL_POLL_S = 0.2
RESULT_TIMEOUT_S = 60.0

ADMIN = ("adam", frozenset({Role.ADMIN}))
OPERATOR = ("olga", frozenset({Role.OPERATOR}))
OWNER = ("alice", frozenset({Role.OWNER}))


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def _sql(query_url: str, sql: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{query_url}/?default_format=JSONEachRow", data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return [json.loads(line) for line in response.read().splitlines()]


def _trail(query_url: str, count: int) -> list[dict[str, Any]]:
    """The whole trail once it holds at least `count` entries (or whatever it holds after the wait)."""
    deadline = time.monotonic() + TRAIL_WAIT_S_MAX
    while True:
        entries: list[dict[str, Any]] = _get(f"{query_url}/audit?limit=1000")["entries"]
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(TRAIL_POLL_S)


def _accepted(api: Api, body: dict[str, Any]) -> None:
    status, answer, _ = api.command(body)
    assert status == 200 and answer["status"] == "ACCEPTED", answer


def test_a_scripted_sequence_reads_back_from_the_audit_table(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    first, second = f"audited-{run}", f"audited-2-{run}"
    with gateway_stack(kafka_bootstrap, tmp_path) as api:
        admin, operator, owner = (api.as_principal(subject, roles) for subject, roles in (ADMIN, OPERATOR, OWNER))
        opened = {"type": "OpenAccount", "dedup_id": "open", "currency": "USD", "owner": "alice"}
        _accepted(admin, {**opened, "command_id": f"open-{run}", "account_id": first})
        _accepted(
            operator, {"type": "LockAccount", "command_id": f"lock-{run}", "dedup_id": "lock", "account_id": first}
        )

        status, answer, _ = owner.command(
            {"type": "LockAccount", "command_id": f"mine-{run}", "dedup_id": "mine", "account_id": first}
        )
        assert (status, answer["code"]) == (403, "FORBIDDEN"), answer

        client = LedgerClient(api.settings)
        try:
            forged = LockAccount(
                command_id=f"direct-{run}",
                dedup_id="direct",
                account_id=first,
                principal=Principal(principal_id=OWNER[0], roles=OWNER[1]),
            )
            result = client.request(forged, RESULT_TIMEOUT_S)
        finally:
            client.close()
        assert result.code is ErrorCode.FORBIDDEN, result

        _accepted(admin, {**opened, "command_id": f"open-2-{run}", "account_id": second})

        expected = [
            ("adam", ["ADMIN"], "OpenAccount", first, f"open-{run}", "ALLOWED", "", "SHARD"),
            ("olga", ["OPERATOR"], "LockAccount", first, f"lock-{run}", "ALLOWED", "", "SHARD"),
            ("alice", ["OWNER"], "LockAccount", first, f"mine-{run}", "DENIED", "FORBIDDEN", "GATEWAY"),
            ("alice", ["OWNER"], "LockAccount", first, f"direct-{run}", "DENIED", "FORBIDDEN", "SHARD"),
            ("adam", ["ADMIN"], "OpenAccount", second, f"open-2-{run}", "ALLOWED", "", "SHARD"),
        ]
        fields = ("principal_id", "roles", "action", "account_id", "command_id", "outcome", "code", "source")
        query_url = api.settings.query_url
        entries = _trail(query_url, len(expected))
        assert [tuple(entry[name] for name in fields) for entry in entries] == expected
        assert all(bool(entry["message"]) == (entry["outcome"] == "DENIED") for entry in entries)
        times = [entry["occurred_at_ms"] for entry in entries]
        assert times == sorted(times)

        # The same table through the SQL endpoint.
        rows = _sql(
            query_url,
            "SELECT principal_id, action, command_id, outcome, source FROM audit FINAL "
            "ORDER BY occurred_at, kafka_partition, kafka_offset",
        )
        assert [tuple(row.values()) for row in rows] == [
            (principal, action, command_id, outcome, source)
            for principal, _, action, _, command_id, outcome, _, source in expected
        ]
        page = _get(f"{query_url}/audit?principal_id=alice&limit=1")
        assert [entry["command_id"] for entry in page["entries"]] == [f"mine-{run}"]
        after = _get(f"{query_url}/audit?principal_id=alice&limit=1&cursor={page['next_cursor']}")
        assert [entry["command_id"] for entry in after["entries"]] == [f"direct-{run}"]

        # A request without a credential: 401, on the trail as the anonymous principal's.
        status, answer, _ = api.with_headers({}).command({"type": "LockAccount", "account_id": first})
        assert (status, answer["code"]) == (401, "UNAUTHENTICATED"), answer
        (anonymous,) = _trail(query_url, len(expected) + 1)[len(expected) :]
        assert (anonymous["principal_id"], anonymous["roles"], anonymous["action"]) == ("", [], "POST /v1/commands")
        assert (anonymous["outcome"], anonymous["code"], anonymous["source"]) == (
            "DENIED",
            "UNAUTHENTICATED",
            "GATEWAY",
        )
