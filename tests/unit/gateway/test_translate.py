"""gateway/translate.py against hostile input: every kind of bad body answers a 4xx with
its stable code (never an exception the gateway cannot answer), and good bodies become
exactly the command they describe."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import ApiError
from gateway.limits import JSON_DEPTH_MAX
from gateway.translate import checked_currencies, parse_json, result_json, to_command
from ledger import commands
from ledger.events import CommandResult, Position, ResultStatus
from ledger.limits import AMOUNT_MAX, BATCH_LEGS_MAX, METADATA_ENTRIES_MAX
from ledger.principals import Principal, Role

DEPOSIT = {"type": "Deposit", "dedup_id": "d1", "account_id": "alice", "amount": "12.34", "currency": "USD"}
LEG = {"account_id": "a", "amount": "-1.00", "currency": "USD"}
BATCH = {
    "type": "Batch",
    "dedup_id": "b1",
    "batch_id": "batch-1",
    "legs": [LEG, {"account_id": "b", "amount": "1.00", "currency": "USD"}],
}
CAPTURE = {
    "type": "CaptureHold",
    "dedup_id": "c1",
    "account_id": "a",
    "hold_id": "h",
    "to_account_id": "b",
    "currency": "USD",
}
LIMITS = {"type": "UpdateLimits", "dedup_id": "u1", "account_id": "a", "currency": "USD"}
HOLD = {"type": "PlaceHold", "dedup_id": "p", "account_id": "a", "hold_id": "h", "amount_minor": 1, "currency": "USD"}


SENDER = Principal(principal_id="tester", roles=frozenset(Role))


def command_of(body: Any, *, idempotency_key: str | None = None) -> commands.Command:
    return to_command(body, principal=SENDER, idempotency_key=idempotency_key)


def deposit(**changes: Any) -> dict[str, Any]:
    body = {**DEPOSIT, **changes}
    return {name: value for name, value in body.items() if value is not ...}


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


# (what, raw body, Idempotency-Key, status, code)
HOSTILE: list[tuple[str, bytes, str | None, int, str]] = [
    ("not UTF-8", b"\xff\xfe{}", None, 400, "BAD_JSON"),
    ("not JSON", b"{type: Deposit}", None, 400, "BAD_JSON"),
    ("empty", b"", None, 400, "BAD_JSON"),
    ("truncated", json.dumps(DEPOSIT).encode()[:-3], None, 400, "BAD_JSON"),
    ("NaN", b'{"type": "Deposit", "amount_minor": NaN}', None, 400, "BAD_JSON"),
    ("Infinity", b'{"type": "Deposit", "amount_minor": -Infinity}', None, 400, "BAD_JSON"),
    ("a key twice", b'{"type": "Deposit", "type": "Withdraw"}', None, 400, "BAD_JSON"),
    ("an integer of 5000 digits", b'{"amount_minor": ' + b"9" * 5000 + b"}", None, 400, "BAD_JSON"),
    ("a lone surrogate", b'{"type": "Deposit", "account_id": "\\ud800"}', None, 400, "BAD_JSON"),
    ("nested past the bound", nested(JSON_DEPTH_MAX + 1), None, 400, "TOO_DEEP"),
    ("nested 100,000 deep (RecursionError before)", nested(100_000), None, 400, "TOO_DEEP"),
    ("deep inside a field", json.dumps(deposit(metadata={"k": [[[[[[[[[]]]]]]]]]})).encode(), None, 400, "TOO_DEEP"),
    ("a list", b"[1, 2]", None, 400, "BAD_REQUEST"),
    ("a string", b'"Deposit"', None, 400, "BAD_REQUEST"),
    ("null", b"null", None, 400, "BAD_REQUEST"),
    ("no type", json.dumps(deposit(type=...)).encode(), None, 400, "MISSING_FIELD"),
    ("an unknown type", json.dumps(deposit(type="Steal")).encode(), None, 400, "UNKNOWN_COMMAND_TYPE"),
    ("type not a string", json.dumps(deposit(type=["Deposit"])).encode(), None, 400, "UNKNOWN_COMMAND_TYPE"),
    ("an internal message type", json.dumps(deposit(type="SettleLeg")).encode(), None, 400, "UNKNOWN_COMMAND_TYPE"),
    ("an unknown field", json.dumps(deposit(admin=True)).encode(), None, 400, "UNKNOWN_FIELD"),
    ("a principal", json.dumps(deposit(principal="root")).encode(), None, 400, "PRINCIPAL_IN_BODY"),
    (
        "a principal as an object",
        json.dumps(deposit(principal={"principal_id": "root", "roles": ["ADMIN"]})).encode(),
        None,
        400,
        "PRINCIPAL_IN_BODY",
    ),
    ("a principal that is null", json.dumps(deposit(principal=None)).encode(), None, 400, "PRINCIPAL_IN_BODY"),
    ("no account", json.dumps(deposit(account_id=...)).encode(), None, 400, "MISSING_FIELD"),
    ("no amount", json.dumps(deposit(amount=...)).encode(), None, 400, "MISSING_FIELD"),
    ("no currency", json.dumps(deposit(currency=...)).encode(), None, 400, "MISSING_FIELD"),
    ("account not a string", json.dumps(deposit(account_id=7)).encode(), None, 400, "BAD_REQUEST"),
    ("command_id not a string (500 before)", json.dumps(deposit(command_id=12)).encode(), None, 400, "BAD_REQUEST"),
    ("command_id an object", json.dumps(deposit(command_id={"a": 1})).encode(), None, 400, "BAD_REQUEST"),
    ("dedup_id not a string", json.dumps(deposit(dedup_id=1)).encode(), None, 400, "BAD_REQUEST"),
    ("amount a JSON number", json.dumps(deposit(amount=12.34)).encode(), None, 400, "BAD_REQUEST"),
    ("amount an integer", json.dumps(deposit(amount=12)).encode(), None, 400, "BAD_REQUEST"),
    ("amount and amount_minor", json.dumps(deposit(amount_minor=1)).encode(), None, 400, "BAD_REQUEST"),
    (
        "amount_minor with a fraction",
        json.dumps(deposit(amount=..., amount_minor=1.5)).encode(),
        None,
        400,
        "BAD_REQUEST",
    ),
    (
        "amount_minor 1e400",
        b'{"type": "Deposit", "dedup_id": "d", "account_id": "a", "currency": "USD", "amount_minor": 1e400}',
        None,
        400,
        "BAD_REQUEST",
    ),
    (
        "amount_minor 1e999999999",
        b'{"type": "Deposit", "dedup_id": "d", "account_id": "a", "currency": "USD", "amount_minor": 1e999999999}',
        None,
        400,
        "BAD_REQUEST",
    ),
    (
        "amount_minor 1.0e20",
        b'{"type": "Deposit", "dedup_id": "d", "account_id": "a", "currency": "USD", "amount_minor": 1.0e20}',
        None,
        422,
        "INVALID_AMOUNT",
    ),
    ("amount_minor a bool", json.dumps(deposit(amount=..., amount_minor=True)).encode(), None, 400, "BAD_REQUEST"),
    ("amount_minor a string", json.dumps(deposit(amount=..., amount_minor="1")).encode(), None, 400, "BAD_REQUEST"),
    (
        "amount_minor past 64 bits (500 before)",
        json.dumps(deposit(amount=..., amount_minor=2**64)).encode(),
        None,
        422,
        "INVALID_AMOUNT",
    ),
    (
        "amount_minor past AMOUNT_MAX",
        json.dumps(deposit(amount=..., amount_minor=AMOUNT_MAX + 1)).encode(),
        None,
        422,
        "INVALID_AMOUNT",
    ),
    (
        "amount_minor of 300 digits",
        json.dumps(deposit(amount=..., amount_minor=10**300)).encode(),
        None,
        422,
        "INVALID_AMOUNT",
    ),
    ("a fraction finer than the currency", json.dumps(deposit(amount="12.345")).encode(), None, 422, "INVALID_AMOUNT"),
    ("an exponent", json.dumps(deposit(amount="1e3")).encode(), None, 422, "INVALID_AMOUNT"),
    ("other digits", json.dumps(deposit(amount="١٢")).encode(), None, 422, "INVALID_AMOUNT"),
    (
        "a decimal past 64 bits",
        json.dumps(deposit(amount="99999999999999999999")).encode(),
        None,
        422,
        "INVALID_AMOUNT",
    ),
    ("a decimal with an unknown currency", json.dumps(deposit(currency="XXX")).encode(), None, 422, "INVALID_CURRENCY"),
    ("currency not a string", json.dumps(deposit(currency=840)).encode(), None, 400, "BAD_REQUEST"),
    (
        "ttl_ms past 64 bits",
        json.dumps({**HOLD, "ttl_ms": 2**64}).encode(),
        None,
        400,
        "BAD_REQUEST",
    ),
    (
        "limits past 64 bits",
        json.dumps({**LIMITS, "lower_limit_minor": -(2**64), "upper_limit_minor": 0}).encode(),
        None,
        422,
        "INVALID_LIMITS",
    ),
    ("metadata not an object", json.dumps(deposit(metadata=["a"])).encode(), None, 400, "BAD_REQUEST"),
    ("metadata values not strings", json.dumps(deposit(metadata={"a": 1})).encode(), None, 400, "BAD_REQUEST"),
    (
        "metadata past its bound",
        json.dumps(deposit(metadata={str(i): "v" for i in range(METADATA_ENTRIES_MAX + 1)})).encode(),
        None,
        400,
        "TOO_MANY_METADATA_ENTRIES",
    ),
    ("legs not a list", json.dumps({**BATCH, "legs": {"a": 1}}).encode(), None, 400, "BAD_REQUEST"),
    ("a leg not an object", json.dumps({**BATCH, "legs": [LEG, 5]}).encode(), None, 400, "BAD_REQUEST"),
    (
        "a leg without an amount (KeyError before)",
        json.dumps({**BATCH, "legs": [LEG, {"account_id": "b", "currency": "USD"}]}).encode(),
        None,
        400,
        "MISSING_FIELD",
    ),
    (
        "a leg without an account",
        json.dumps({**BATCH, "legs": [LEG, {"amount": "1", "currency": "USD"}]}).encode(),
        None,
        400,
        "MISSING_FIELD",
    ),
    (
        "a leg with an unknown field",
        json.dumps({**BATCH, "legs": [LEG, {**LEG, "x": 1}]}).encode(),
        None,
        400,
        "BAD_REQUEST",
    ),
    (
        "a leg amount past 64 bits",
        json.dumps({**BATCH, "legs": [LEG, {"account_id": "b", "amount_minor": -(2**63), "currency": "USD"}]}).encode(),
        None,
        422,
        "INVALID_AMOUNT",
    ),
    (
        "more legs than a batch may have",
        json.dumps({**BATCH, "legs": [{**LEG, "account_id": f"a{i}"} for i in range(BATCH_LEGS_MAX + 1)]}).encode(),
        None,
        400,
        "TOO_MANY_LEGS",
    ),
    (
        "a capture without its currency (the ledger checks it against the hold's)",
        json.dumps({key: value for key, value in {**CAPTURE, "amount": "5.00"}.items() if key != "currency"}).encode(),
        None,
        400,
        "MISSING_FIELD",
    ),
    (
        "limits without their currency (the ledger checks it against the account's)",
        json.dumps(
            {
                key: value
                for key, value in {**LIMITS, "lower_limit": "-1", "upper_limit": "100"}.items()
                if key != "currency"
            }
        ).encode(),
        None,
        400,
        "MISSING_FIELD",
    ),
    (
        "a capture priced in an unknown currency",
        json.dumps({**CAPTURE, "amount_minor": 5, "currency": "ABC"}).encode(),
        None,
        422,
        "INVALID_CURRENCY",
    ),
    ("no dedup id anywhere", json.dumps(deposit(dedup_id=...)).encode(), None, 422, "DEDUP_ID_REQUIRED"),
    ("an Idempotency-Key with a space", json.dumps(deposit(dedup_id=...)).encode(), "a b", 400, "BAD_IDEMPOTENCY_KEY"),
    ("an Idempotency-Key too long", json.dumps(deposit(dedup_id=...)).encode(), "k" * 129, 400, "BAD_IDEMPOTENCY_KEY"),
    (
        "an Idempotency-Key beside another dedup_id",
        json.dumps(deposit()).encode(),
        "other",
        422,
        "IDEMPOTENCY_KEY_CONFLICT",
    ),
    (
        "an Idempotency-Key on a query",
        json.dumps({"type": "QueryCommand", "account_id": "a", "target_command_id": "c"}).encode(),
        "k",
        422,
        "IDEMPOTENCY_KEY_CONFLICT",
    ),
    ("a command_id with a space", json.dumps(deposit(command_id="a b")).encode(), None, 422, "MALFORMED"),
    ("an account id of 65 characters", json.dumps(deposit(account_id="a" * 65)).encode(), None, 422, "MALFORMED"),
    ("an account id in unicode", json.dumps(deposit(account_id="ünï")).encode(), None, 422, "MALFORMED"),
    (
        "a reason past its bound",
        json.dumps({"type": "LockAccount", "dedup_id": "l", "account_id": "a", "reason": "r" * 257}).encode(),
        None,
        422,
        "MALFORMED",
    ),
    ("a zero amount", json.dumps(deposit(amount="0.00")).encode(), None, 422, "INVALID_AMOUNT"),
    (
        "a transfer to itself",
        json.dumps(
            {
                "type": "Transfer",
                "dedup_id": "t",
                "from_account_id": "a",
                "to_account_id": "a",
                "amount": "1",
                "currency": "USD",
            }
        ).encode(),
        None,
        422,
        "SAME_ACCOUNT",
    ),
    (
        "an unbalanced batch",
        json.dumps({**BATCH, "legs": [LEG, {**LEG, "account_id": "b"}]}).encode(),
        None,
        422,
        "UNBALANCED_BATCH",
    ),
    (
        "a hold for 31 days",
        json.dumps({**HOLD, "ttl_ms": 31 * 86_400_000}).encode(),
        None,
        422,
        "INVALID_EXPIRY",
    ),
    ("a batch id with '|'", json.dumps({**BATCH, "batch_id": "a|b"}).encode(), None, 422, "MALFORMED"),
]


@pytest.mark.parametrize(("what", "raw", "key", "status", "code"), HOSTILE, ids=[row[0] for row in HOSTILE])
def test_a_hostile_body_is_a_4xx_with_its_code(what: str, raw: bytes, key: str | None, status: int, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        command_of(parse_json(raw), idempotency_key=key)
    assert (caught.value.status, caught.value.code.value) == (status, code), caught.value.message
    body = caught.value.body()
    assert set(body) == {"code", "message", "details"} and body["message"]


def test_good_bodies_become_the_commands_they_describe() -> None:
    command = command_of(parse_json(json.dumps(deposit(metadata={"order": "42"}, command_id="c-1")).encode()))
    assert command == commands.Deposit(
        command_id="c-1",
        dedup_id="d1",
        account_id="alice",
        amount=1234,
        currency="USD",
        metadata={"order": "42"},
        principal=SENDER,
    )
    batch = command_of(BATCH)
    assert isinstance(batch, commands.Batch) and [leg.amount for leg in batch.legs] == [-100, 100]
    capture = command_of({**CAPTURE, "amount": "5", "currency": "JPY"})
    assert isinstance(capture, commands.CaptureHold) and capture.amount == 5
    limits = command_of({**LIMITS, "lower_limit": "-1.5", "upper_limit_minor": 10, "currency": "KWD"})
    assert isinstance(limits, commands.UpdateLimits) and (limits.lower_limit, limits.upper_limit) == (-1500, 10)
    # JSON Schema counts 12.0 as an integer: taken exactly (9007199254740993.0 is not a float here).
    exact = command_of(
        parse_json(
            b'{"type": "Deposit", "dedup_id": "d", "account_id": "a", "currency": "USD", '
            b'"amount_minor": 9007199254740993.0}'
        )
    )
    assert isinstance(exact, commands.Deposit) and exact.amount == 9007199254740993
    keyed = command_of(deposit(dedup_id=...), idempotency_key="key-1")
    assert isinstance(keyed, commands.Deposit) and keyed.dedup_id == "key-1"
    assert command_of(deposit(command_id="c"), idempotency_key="d1") == command_of(deposit(command_id="c"))
    opened = command_of(
        {
            "type": "OpenAccount",
            "dedup_id": "o",
            "account_id": "a",
            "currency": "USD",
            "metadata": {"owner": "ann"},
            "parent_account_id": None,
        }
    )
    assert isinstance(opened, commands.OpenAccount) and opened.metadata == {"owner": "ann"}


def test_metadata_can_be_sent_with_every_command_that_has_it() -> None:
    """Defect: the type check refused every metadata value."""
    for body in (
        deposit(),
        {**deposit(type="Withdraw")},
        {
            "type": "Transfer",
            "dedup_id": "t",
            "from_account_id": "a",
            "to_account_id": "b",
            "amount": "1",
            "currency": "USD",
        },
        BATCH,
        {"type": "OpenAccount", "dedup_id": "o", "account_id": "a", "currency": "USD"},
    ):
        command = command_of({**body, "metadata": {"invoice": "INV-1", "note": ""}})
        assert command.metadata == {"invoice": "INV-1", "note": ""}  # type: ignore[union-attr]


def test_results_render_positions_as_decimals_of_the_currency_the_ledger_checked() -> None:
    """Defect: results returned minor units only."""
    transfer = command_of(
        {
            "type": "Transfer",
            "dedup_id": "t",
            "from_account_id": "a",
            "to_account_id": "b",
            "amount": "1",
            "currency": "KWD",
        }
    )
    assert checked_currencies(transfer) == {"a": "KWD", "b": "KWD"}
    assert checked_currencies(command_of(BATCH)) == {"a": "USD", "b": "USD"}
    # The ledger checks a capture's currency against the hold's: its positions render in it.
    assert checked_currencies(command_of({**CAPTURE, "amount": "5", "currency": "JPY"})) == {"a": "JPY", "b": "JPY"}
    result = CommandResult(
        command_id="c",
        dedup_id="t",
        command_type="Transfer",
        status=ResultStatus.ACCEPTED,
        code=None,
        message="",
        reference_id="c",
        positions=[Position(account_id="a", sequence=3, balance=-1500, available=1)],
        replayed=False,
        original_command_id="c",
        decided_at_ms=1,
        queried=None,
    )
    position = result_json(result, checked_currencies(transfer))["positions"][0]
    assert position == {
        "account_id": "a",
        "sequence": 3,
        "balance_minor": -1500,
        "available_minor": 1,
        "currency": "KWD",
        "balance": "-1.500",
        "available": "0.001",
    }
    assert "balance" not in result_json(result, {})["positions"][0]
