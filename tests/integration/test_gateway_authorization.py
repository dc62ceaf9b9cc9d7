"""Authentication, authorization and rate limits at the gateway, on real parts: a worker,
the query service and the gateway as separate processes against a real broker.

The matrix, each cell an HTTP request with its status asserted:
  * every command type x every role alone and no role (a principal with no role of ours):
    a role that may never send that type is 403 FORBIDDEN and the command never reaches
    Kafka (read back from the commands topic); an allowed one reaches the ledger, which
    answers for itself (the accounts here do not exist: the shard refuses an owner's debit of
    one, FORBIDDEN, and answers ACCOUNT_NOT_FOUND to the others);
  * every read x every role, on an account without an owner and on one that does not exist;
  * GET /v1/commands/{id} x every role, for a command the asker sent and one it did not;
  * every protected operation x 13 ways a credential can be wrong: 401 with its code,
    WWW-Authenticate and the error body, and nothing produced;
and an API key made and revoked with the CLI (a subprocess), and a burst past a
principal's rate: 429 with Retry-After.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from codec import Codec
from gateway.principals import PRINCIPAL_FIELD, carries_principal
from ledger import commands
from ledger.principals import Principal, Role
from streamwallet.stack import Stack
from tests.conftest import free_port
from tests.credentials import apikeys_cli, bearer
from tests.gateway_api import Api, gateway_stack, open_with_balance, quoted
from tests.principals import ROLE_COLUMNS
from tests.support import read_decoded

pytestmark = pytest.mark.kafka

# role column -> (subject, roles)
ROLES = ROLE_COLUMNS
FORBIDDEN = (403, "FORBIDDEN")
# What each role may send at all (gateway/authorization.py's table, written out again here).
SENDERS: dict[str, set[str]] = {
    "OpenAccount": {"ADMIN"},
    "UpdateLimits": {"OPERATOR"},
    "LockAccount": {"OPERATOR"},
    "UnlockAccount": {"OPERATOR"},
    "CloseAccount": {"OPERATOR"},
    "Deposit": {"OPERATOR"},
    "ReverseTransfer": {"OPERATOR"},
    "SetVelocityRules": {"OPERATOR"},
    "Withdraw": {"OWNER"},
    "Transfer": {"OWNER"},
    "Batch": {"OWNER"},
    "PlaceHold": {"OWNER"},
    "CaptureHold": {"OWNER"},
    "VoidHold": {"OWNER"},
    "QueryCommand": {"OPERATOR", "AUDITOR"},
    "AssignOwner": {"ADMIN"},
}
# The ledger's own answer to an allowed command on accounts that do not exist: an account that
# does not exist is nobody's, so the shard refuses to debit it (ledger/authorization.py).
OWNERS_DEBITS = ("Withdraw", "Transfer", "Batch", "PlaceHold", "CaptureHold", "VoidHold")
LEDGER_ANSWERS: dict[str, tuple[int, str]] = {
    "OpenAccount": (200, "ACCEPTED"),
    "QueryCommand": (404, "COMMAND_NOT_FOUND"),
    **dict.fromkeys(OWNERS_DEBITS, FORBIDDEN),
    **dict.fromkeys(
        [name for name in SENDERS if name not in ("OpenAccount", "QueryCommand", *OWNERS_DEBITS)],
        (404, "ACCOUNT_NOT_FOUND"),
    ),
}


def body_of(command_type: str, *, run: str, column: str) -> dict[str, Any]:
    """A valid command of this type, with ids of its own, on accounts that do not exist."""
    ghost = f"ghost-{run}"
    ids = {"command_id": f"{command_type}-{column}-{run}"}
    if command_type != "QueryCommand":
        ids["dedup_id"] = f"{command_type}-{column}"
    usd = {"amount": "1.00", "currency": "USD"}
    bodies: dict[str, dict[str, Any]] = {
        "OpenAccount": {"account_id": f"opened-{column}-{run}", "currency": "USD"},
        "UpdateLimits": {"account_id": ghost, "lower_limit_minor": -5, "upper_limit_minor": 5, "currency": "USD"},
        "LockAccount": {"account_id": ghost},
        "UnlockAccount": {"account_id": ghost},
        "CloseAccount": {"account_id": ghost},
        "Deposit": {"account_id": ghost, **usd},
        "Withdraw": {"account_id": ghost, **usd},
        "Transfer": {"from_account_id": ghost, "to_account_id": f"{ghost}-2", **usd},
        "Batch": {
            "batch_id": f"batch-{column}-{run}",
            "legs": [
                {"account_id": ghost, "amount": "-1", "currency": "USD"},
                {"account_id": f"{ghost}-2", "amount": "1", "currency": "USD"},
            ],
        },
        "PlaceHold": {"account_id": ghost, "hold_id": "h", "ttl_ms": 60_000, **usd},
        "CaptureHold": {
            "account_id": ghost,
            "hold_id": "h",
            "amount_minor": 1,
            "to_account_id": f"{ghost}-2",
            "currency": "USD",
        },
        "VoidHold": {"account_id": ghost, "hold_id": "h"},
        "ReverseTransfer": {"account_id": ghost, "transfer_id": "t"},
        "SetVelocityRules": {"account_id": ghost, "hour_count_max": 3, "freeze_on_trip": True, "currency": "USD"},
        "QueryCommand": {"account_id": ghost, "target_command_id": f"nothing-{run}"},
        "AssignOwner": {"account_id": ghost, "owner": "alice"},
    }
    return {"type": command_type, **ids, **bodies[command_type]}


@dataclasses.dataclass
class World:
    api: Api
    run: str
    account: str  # exists; it has no owner
    mine: str  # exists, with money; the OWNER column's (alice's)
    sent: dict[str, list[str]]  # command ids the gateway let through / refused ("allowed", "denied")

    def as_role(self, column: str) -> Api:
        subject, roles = ROLES[column]
        return self.api.as_principal(subject, roles)

    def produced(self) -> dict[str, Any]:
        """Every command on the commands topic by its id."""
        topic = f"{self.api.settings.topic_prefix}.commands"
        return {
            command.command_id: command for command in read_decoded(self.api.settings.bootstrap_servers, topic, Codec())
        }


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with gateway_stack(kafka_bootstrap, tmp_path_factory.mktemp("gateway-authorization")) as api:
        run = uuid.uuid4().hex[:8]
        account = f"acct-{run}"
        sequence = open_with_balance(api, account, 1000, owner="")
        assert api.read(f"/v1/accounts/{account}?min_seq={sequence}")[0] == 200
        mine = f"mine-{run}"
        open_with_balance(api, mine, 1000, owner=ROLES["OWNER"][0])
        yield World(api=api, run=run, account=account, mine=mine, sent={"allowed": [], "denied": []})


# -- commands --------------------------------------------------------------------------------------

COMMAND_CELLS = [(command_type, column) for command_type in SENDERS for column in ROLES]


@pytest.mark.parametrize(("command_type", "column"), COMMAND_CELLS)
def test_a_command_type_only_its_roles_may_send(world: World, command_type: str, column: str) -> None:
    body = body_of(command_type, run=world.run, column=column)
    status, answer, _ = world.as_role(column).command(body)
    if column in SENDERS[command_type]:
        wanted = {LEDGER_ANSWERS[command_type]}
        if command_type == "Batch":  # legs on other shards: the first vote against it (either leg's) aborts it
            wanted.add((404, "ACCOUNT_NOT_FOUND"))
        assert (status, answer.get("code") or answer["status"]) in wanted, answer
        world.sent["allowed"].append(body["command_id"])
    else:
        assert (status, answer["code"]) == FORBIDDEN, answer
        assert answer["details"]["allowed_roles"] == sorted(SENDERS[command_type]), answer
        world.sent["denied"].append(body["command_id"])


def test_a_refused_command_never_reaches_kafka_and_an_allowed_one_carries_its_sender(world: World) -> None:
    """After the command cells: what the gateway refused is not on the commands topic."""
    assert len(world.sent["allowed"]) + len(world.sent["denied"]) == len(COMMAND_CELLS), "run the matrix first"
    produced = world.produced()
    assert not set(world.sent["denied"]) & set(produced)
    assert set(world.sent["allowed"]) <= set(produced)
    for command_id in world.sent["allowed"]:
        command = produced[command_id]
        if carries_principal(type(command)):  # once the ledger's commands carry it
            column = command_id.split("-")[1]
            subject, roles = ROLES[column]
            assert getattr(command, PRINCIPAL_FIELD) == Principal(principal_id=subject, roles=roles)


# -- reads -----------------------------------------------------------------------------------------

ACCOUNT_READS = ["", "/history", "/as-of", "/turnover", "/rollup"]
EVERY_ACCOUNT_READERS = {"OPERATOR", "ADMIN", "AUDITOR"}


@pytest.mark.parametrize("column", list(ROLES))
@pytest.mark.parametrize("suffix", ACCOUNT_READS)
def test_an_account_whose_owner_is_not_known_is_read_by_operators_admins_and_auditors(
    world: World, suffix: str, column: str
) -> None:
    api = world.as_role(column)
    status, answer, _ = api.call("GET", f"/v1/accounts/{quoted(world.account)}{suffix}")
    if column in EVERY_ACCOUNT_READERS:
        assert status == 200 and answer["status"] == "ok", answer
    else:
        assert (status, answer["code"]) == FORBIDDEN, answer
    # An account that does not exist: 404 for those who may read any, 403 for an owner
    # (who must not learn whether another's account exists).
    status, answer, _ = api.call("GET", f"/v1/accounts/nobody-{world.run}{suffix}")
    expected = (404, "ACCOUNT_NOT_FOUND") if column in EVERY_ACCOUNT_READERS else FORBIDDEN
    assert (status, answer["code"]) == expected, answer


@pytest.mark.parametrize("column", list(ROLES))
def test_totals_need_operator_or_auditor(world: World, column: str) -> None:
    status, answer, _ = world.as_role(column).call("GET", "/v1/totals")
    if column in {"OPERATOR", "AUDITOR"}:
        assert status == 200 and answer["status"] == "ok", answer
    else:
        assert (status, answer["code"]) == FORBIDDEN, answer


@pytest.mark.parametrize("column", list(ROLES))
def test_every_principal_sees_the_gateways_counters(world: World, column: str) -> None:
    status, answer, _ = world.as_role(column).call("GET", "/v1/status")
    assert status == 200 and "pending" in answer


# -- the outcome of a command ----------------------------------------------------------------------

# (asker, the command's sender column, expected status): a command is the asker's own or another's.
OUTCOME_CELLS: list[tuple[str, str, int]] = [
    ("OWNER", "OWNER", 200),  # alice asks after her Withdraw
    ("OPERATOR", "OPERATOR", 200),
    ("ADMIN", "ADMIN", 200),
    ("AUDITOR", "AUDITOR", 404),  # a QueryCommand is not remembered by the ledger: allowed, nothing found
    ("OPERATOR", "OWNER", 200),
    ("AUDITOR", "OWNER", 200),
    ("ADMIN", "OWNER", 403),
    ("none", "OWNER", 403),
    ("another OWNER", "OWNER", 403),
    ("OWNER", "OPERATOR", 403),
    ("ADMIN", "OPERATOR", 403),
]
SENT_BY = {"OWNER": "Withdraw", "OPERATOR": "Deposit", "ADMIN": "OpenAccount", "AUDITOR": "QueryCommand"}


@pytest.mark.parametrize(("asker", "sender", "expected"), OUTCOME_CELLS)
def test_the_outcome_of_a_command_is_for_its_sender_operators_and_auditors(
    world: World, asker: str, sender: str, expected: int
) -> None:
    command_type = SENT_BY[sender]
    body = body_of(command_type, run=world.run, column=f"own{sender}")
    if command_type == "Withdraw":  # from alice's own account: accepted (a denied command is not remembered)
        body["account_id"] = world.mine
    sent_status, sent, _ = world.as_role(sender).command(body)
    assert sent_status == (200 if command_type == "Withdraw" else LEDGER_ANSWERS[command_type][0]), sent
    routing_key = body.get("account_id") or body.get("batch_id")
    api = world.api.as_principal("otto", frozenset({Role.OWNER})) if asker == "another OWNER" else world.as_role(asker)
    status, answer, _ = api.call("GET", f"/v1/commands/{body['command_id']}?account_id={routing_key}")
    assert status == expected, answer
    if expected == 200:
        assert answer["command_id"] == body["command_id"], answer
    elif expected == 403:
        assert answer["code"] == "FORBIDDEN", answer


# -- credentials -----------------------------------------------------------------------------------

SKEW_S = 60  # the settings' default


def wrong_credentials(world: World) -> dict[str, tuple[dict[str, str], str]]:
    """Each way a credential can be wrong: (headers, the code of the 401)."""
    credentials = world.api.credentials
    every = frozenset(Role)
    now_s = int(time.time())
    claims = {"sub": "x", "aud": "streamwallet", "iss": "streamwallet", "exp": now_s + 600}
    hostile_header = jwt.utils.base64url_encode(json.dumps({"alg": "é\"\\'<"}).encode()).decode()
    valid, revoked = credentials.api_key("spare-bot", every), credentials.api_key("revoked-bot", every)
    _run_cli(world, "revoke", _key_id(revoked))
    return {
        "no credential": ({}, "UNAUTHENTICATED"),
        "Basic": ({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, "INVALID_CREDENTIAL"),
        "not a token": (bearer("not-a-token"), "INVALID_CREDENTIAL"),
        "another secret": (
            bearer(jwt.encode(claims, "k" * 32)),
            "INVALID_CREDENTIAL",
        ),
        "alg none": (
            bearer(jwt.encode(claims, "", "none")),
            "INVALID_CREDENTIAL",
        ),
        "another audience": (credentials.headers("x", every, aud="another"), "INVALID_CREDENTIAL"),
        "another issuer": (credentials.headers("x", every, iss="another"), "INVALID_CREDENTIAL"),
        "expired": (credentials.headers("x", every, exp=now_s - SKEW_S - 300), "CREDENTIAL_EXPIRED"),
        "not yet valid": (credentials.headers("x", every, nbf=now_s + SKEW_S + 300), "CREDENTIAL_NOT_YET_VALID"),
        "issued in the future": (credentials.headers("x", every, iat=now_s + SKEW_S + 300), "CREDENTIAL_NOT_YET_VALID"),
        "a key with a wrong secret": (bearer(valid[:-1] + ("A" if valid[-1] != "A" else "B")), "INVALID_CREDENTIAL"),
        "a revoked key": (bearer(revoked), "CREDENTIAL_REVOKED"),
        "an algorithm of quotes and non-ASCII": (bearer(f"{hostile_header}.e30.c2ln"), "INVALID_CREDENTIAL"),
    }


def protected_operations(world: World) -> list[tuple[str, str, Any]]:
    """(method, path, body) of every operation that needs a credential."""
    account = quoted(world.account)
    return [
        ("POST", "/v1/commands", body_of("Deposit", run=world.run, column="anonymous")),
        *[("GET", f"/v1/accounts/{account}{suffix}", None) for suffix in ACCOUNT_READS],
        ("GET", "/v1/totals", None),
        ("GET", f"/v1/commands/c-1?account_id={account}", None),
        ("GET", "/v1/status", None),
    ]


def test_every_protected_operation_refuses_every_wrong_credential_with_401(world: World) -> None:
    cells = 0
    for what, (headers, code) in wrong_credentials(world).items():
        api = world.api.with_headers(headers)
        for method, path, body in protected_operations(world):
            status, answer, answer_headers = api.call(method, path, body)
            assert (status, answer["code"]) == (401, code), (what, method, path, answer)
            assert set(answer) == {"code", "message", "details"}
            assert answer_headers["WWW-Authenticate"].startswith('Bearer realm="streamwallet"'), answer_headers
            cells += 1
    assert cells == 13 * 9
    assert f"Deposit-anonymous-{world.run}" not in world.produced()  # none of the 13 submits was produced


def test_a_token_within_the_clock_skew_is_accepted(world: World) -> None:
    for claims in ({"exp": int(time.time()) - SKEW_S // 2}, {"nbf": int(time.time()) + SKEW_S // 2}):
        api = world.api.as_principal("skewed", frozenset({Role.AUDITOR}), **claims)
        for method, path, _body in protected_operations(world)[1:]:
            status, answer, _ = api.call(method, path)
            assert status in (200, 404), (claims, path, answer)


# -- an API key through its life, with the CLI -----------------------------------------------------


def _run_cli(world: World, *arguments: str) -> subprocess.CompletedProcess[str]:
    answer = apikeys_cli(world.api.settings.auth_api_keys_file, *arguments)
    assert answer.returncode == 0, answer.stderr
    return answer


def _key_id(key: str) -> str:
    return key.split("_")[1]


def test_a_key_made_with_the_cli_works_until_it_is_revoked_with_the_cli(world: World) -> None:
    made = json.loads(_run_cli(world, "create", "--name", "reporting", "--role", "auditor", "--json").stdout)
    api = world.api.with_headers(bearer(made["key"]))
    status, totals, _ = api.call("GET", "/v1/totals")
    assert status == 200, totals
    status, refused, _ = api.command(body_of("Deposit", run=world.run, column="reporting"))
    assert (status, refused["code"]) == FORBIDDEN and refused["details"]["principal_id"] == "reporting"
    _run_cli(world, "revoke", made["key_id"])
    status, answer, _ = api.call("GET", "/v1/totals")
    assert (status, answer["code"]) == (401, "CREDENTIAL_REVOKED"), answer


# -- rate limits -----------------------------------------------------------------------------------

RATE_PER_S = 1
BURST = 5
BURST_REQUESTS = 20


def test_a_burst_past_a_principals_rate_is_429_with_retry_after(world: World, tmp_path: Any) -> None:
    """A second gateway on the same deployment, with a small limit."""
    settings = dataclasses.replace(
        world.api.settings,
        gateway_port=free_port(),
        gateway_rate_limit_per_s=RATE_PER_S,
        gateway_rate_limit_burst=BURST,
    )
    stack = Stack(settings, tmp_path)
    gateway = stack.gateway().start()
    try:
        gateway.wait_ready()
        limited = dataclasses.replace(world.api, settings=settings)
        answers = [limited.call("GET", "/v1/status") for _ in range(BURST_REQUESTS)]
        statuses = [status for status, _, _ in answers]
        assert statuses[:BURST] == [200] * BURST, statuses
        refused = [(body, headers) for status, body, headers in answers if status == 429]
        assert refused and statuses.count(200) < BURST_REQUESTS, statuses
        body, headers = refused[0]
        assert body["code"] == "RATE_LIMITED" and set(body) == {"code", "message", "details"}, body
        retry_after = int(headers["Retry-After"])
        assert retry_after >= 1 and body["details"]["retry_after_s"] == retry_after
        # Another principal has a bucket of its own.
        other = limited.as_principal("someone-else", frozenset({Role.AUDITOR}))
        assert other.call("GET", "/v1/status")[0] == 200
        time.sleep(retry_after)
        assert limited.call("GET", "/v1/status")[0] == 200
    finally:
        stack.stop_all()


def test_commands_of_every_type_the_matrix_covers() -> None:
    assert set(SENDERS) == {cls.__name__ for cls in commands.COMMAND_TYPES}
