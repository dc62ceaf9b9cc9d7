"""Round trips of every record type with generated values, and bad input that must be a
DecodeError (never another exception, never a wrong value)."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import types
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec import Codec, DecodeError
from codec.avro import INTERNED_MAX
from codec.registry import RECORD_TYPES
from ledger import commands
from ledger.events import CommandResult
from ledger.principals import Principal, Role

CODEC = Codec()
LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT = st.integers(min_value=-(2**31), max_value=2**31 - 1)
TEXT = st.text(max_size=12)


def _avro_int_fields() -> set[tuple[str, str]]:
    """(record name, field name) of the fields that are Avro ints (32 bits), not longs."""
    found: set[tuple[str, str]] = set()

    def walk(schema: Any) -> None:
        if isinstance(schema, list):
            for branch in schema:
                walk(branch)
        elif isinstance(schema, dict):
            for field in schema.get("fields", []):
                if field["type"] == "int":
                    found.add((schema["name"].rsplit(".", 1)[-1], field["name"]))
                walk(field["type"])
            for key in ("items", "values"):
                walk(schema.get(key))

    for cls in RECORD_TYPES.values():
        walk(CODEC.schema(cls).parsed_plain)
    return found


AVRO_INT_FIELDS = _avro_int_fields()


def strategy_for(hint: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if inner is CommandResult and depth > 0:
            return st.none()
        return st.none() | strategy_for(inner, depth + 1)
    if origin is list:
        return st.lists(strategy_for(typing.get_args(hint)[0], depth + 1), max_size=3)
    if origin is frozenset:
        return st.frozensets(strategy_for(typing.get_args(hint)[0], depth + 1), max_size=3)
    if origin is dict:
        return st.dictionaries(TEXT, TEXT, max_size=3)
    if hint is int:
        return LONG
    if hint is str:
        return TEXT
    if hint is bool:
        return st.booleans()
    if hint is bytes:
        return st.binary(min_size=16, max_size=16)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return st.builds(
            hint,
            **{
                field.name: INT
                if (hint.__name__, field.name) in AVRO_INT_FIELDS
                else strategy_for(hints[field.name], depth + 1)
                for field in dataclasses.fields(hint)
            },
        )
    raise TypeError(hint)


RECORD_CLASSES = sorted(RECORD_TYPES.values(), key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=[cls.__name__ for cls in RECORD_CLASSES])
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_round_trip(cls: type, data: st.DataObject) -> None:
    value = data.draw(strategy_for(cls))
    encoded = CODEC.encode(value)
    assert encoded[:2] == b"\xc3\x01"
    assert encoded[2:10] == CODEC.fingerprint(cls)
    assert CODEC.decode(encoded) == value
    assert CODEC.encode(CODEC.decode(encoded)) == encoded  # deterministic bytes


DEPOSIT = CODEC.encode(
    commands.Deposit(command_id="c", dedup_id="d", account_id="a", amount=1, currency="USD", metadata={"k": "v"})
)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "UNDECODABLE"),
        (b"\xc3", "UNDECODABLE"),
        (b'{"json": true}', "UNDECODABLE"),
        (b"\xc3\x01" + b"\x11" * 8, "UNKNOWN_SCHEMA"),
        (DEPOSIT[:-3], "UNDECODABLE"),
        (DEPOSIT + b"\x00", "UNDECODABLE"),
        (DEPOSIT[:10] + b"\xff" * 40, "UNDECODABLE"),
    ],
)
def test_bad_bytes_are_decode_errors(data: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as raised:
        CODEC.decode(data)
    assert raised.value.code == code


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_other_exceptions(data: bytes) -> None:
    for candidate in (data, DEPOSIT[:10] + data, b"\xc3\x01" + data):
        with contextlib.suppress(DecodeError):
            CODEC.decode(candidate)


def test_expected_types_are_enforced() -> None:
    with pytest.raises(DecodeError) as raised:
        CODEC.decode(DEPOSIT, expected=(commands.Withdraw,))
    assert raised.value.code == "UNEXPECTED_TYPE"


def test_decoded_principals_are_one_object_per_principal_and_still_checked() -> None:
    """A principal is on every command: the decoder hands out one object per distinct
    principal (the writer and the hash chain then find it by identity), never one principal
    for another, and the right one again after the bound drops what it kept."""
    codec = Codec()

    def principal_of(principal_id: str, roles: frozenset[Role]) -> Principal:
        command = commands.Deposit(
            principal=Principal(principal_id=principal_id, roles=roles),
            command_id="c",
            dedup_id="d",
            account_id="a",
            amount=1,
            currency="USD",
        )
        decoded: Principal = codec.decode(codec.encode(command)).principal
        return decoded

    first = principal_of("svc", frozenset({Role.OWNER}))
    assert principal_of("svc", frozenset({Role.OWNER})) is first
    others = [principal_of("svc", frozenset({Role.OWNER, Role.ADMIN})), principal_of("svc2", frozenset({Role.OWNER}))]
    assert others == [
        Principal(principal_id="svc", roles=frozenset({Role.OWNER, Role.ADMIN})),
        Principal(principal_id="svc2", roles=frozenset({Role.OWNER})),
    ]
    assert all(other is not first for other in others)
    # Past the bound, kept afresh: still the right principal each time.
    many = [principal_of(f"p{index}", frozenset({Role.AUDITOR})) for index in range(INTERNED_MAX + 5)]
    assert [principal.principal_id for principal in many] == [f"p{index}" for index in range(INTERNED_MAX + 5)]
    assert principal_of("svc", frozenset({Role.OWNER})) == first
