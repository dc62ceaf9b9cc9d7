"""The generated Avro writers against fastavro's: the same bytes for every record type,
and values a schema cannot carry refused."""

from __future__ import annotations

import dataclasses
import io

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec import EncodeError
from codec.avro import MAGIC
from codec.golden import EXAMPLES
from codec.writer import zigzag_varint
from ledger import commands, legs
from ledger.events import CommandResult, Position
from ledger.principals import Principal, Role
from tests.unit.codec.test_codec import CODEC, RECORD_CLASSES, strategy_for


def fastavro_encoding(value: object) -> bytes:
    schema = CODEC.schema(type(value))
    buffer = io.BytesIO()
    buffer.write(MAGIC + schema.fingerprint)
    schemaless_writer(buffer, schema.parsed_plain, CODEC.to_record(value))
    return buffer.getvalue()


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=[cls.__name__ for cls in RECORD_CLASSES])
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_the_same_bytes_as_fastavro(cls: type, data: st.DataObject) -> None:
    value = data.draw(strategy_for(cls))
    assert CODEC.encode(value) == fastavro_encoding(value)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_zigzag_varint_is_avros_long(value: int) -> None:
    deposit = commands.Deposit(command_id="c", dedup_id="d", account_id="a", amount=value, currency="USD")
    assert CODEC.encode(deposit) == fastavro_encoding(deposit)
    assert zigzag_varint(value) in fastavro_encoding(deposit)


RESULT = next(example for example in EXAMPLES if type(example) is CommandResult)


def deposit(**changes: object) -> commands.Deposit:
    fields: dict[str, object] = {"command_id": "c", "dedup_id": "d", "account_id": "a", "amount": 1, "currency": "USD"}
    return commands.Deposit(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (deposit(amount=2**63), "outside the range"),
        (deposit(amount=-(2**63) - 1), "outside the range"),
        (deposit(amount=True), "expected an integer"),
        (deposit(amount="1"), "expected an integer"),
        (deposit(amount=1.0), "expected an integer"),
        (deposit(account_id=b"a"), "expected a string"),
        (deposit(metadata={"k": 1}), "expected a string"),
        (deposit(metadata=[("k", "v")]), "expected a dict"),
        (legs.BatchAck(batch_id="b", leg_index=2**31, account_id="a", position=None), "outside the range"),
        (dataclasses.replace(RESULT, status="MAYBE"), "is not a ResultStatus"),  # type: ignore[arg-type]
        (dataclasses.replace(RESULT, replayed=1), "expected a boolean"),  # type: ignore[arg-type]
        (dataclasses.replace(RESULT, replayed=None), "expected a boolean"),  # type: ignore[arg-type]
        (Position(account_id="a", sequence=1, balance=1, available=1), "not an Avro record type"),
    ],
)
def test_values_the_schema_cannot_carry_are_refused(value: object, reason: str) -> None:
    with pytest.raises(EncodeError, match=reason):
        CODEC.encode(value)


def test_a_nested_record_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(EncodeError, match="expected a Position"):
        CODEC.encode(dataclasses.replace(RESULT, positions=["not a position"]))  # type: ignore[list-item]


def test_a_str_enum_field_given_its_symbol_as_plain_text_writes_the_member() -> None:
    as_text = dataclasses.replace(RESULT, status=str(RESULT.status.value))  # type: ignore[arg-type]
    assert type(as_text.status) is str
    assert CODEC.encode(as_text) == CODEC.encode(RESULT)


@pytest.mark.parametrize(
    "value", [-(2**63), -65, -64, -1, 0, 63, 64, 8191, 8192, 2**14, 2**20 - 1, 2**20, 2**21, 2**63 - 1]
)
def test_zigzag_varint_is_exactly_avros_long_at_each_boundary(value: int) -> None:
    """The lookup table, the three-byte path and the general loop each meet the next exactly."""
    out = io.BytesIO()
    schemaless_writer(out, "long", value)
    assert zigzag_varint(value) == out.getvalue()


@given(st.integers(min_value=-(2**21), max_value=2**21))
def test_zigzag_varint_is_exactly_avros_long_near_zero(value: int) -> None:
    out = io.BytesIO()
    schemaless_writer(out, "long", value)
    assert zigzag_varint(value) == out.getvalue()


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_zigzag_varint_is_exactly_avros_long_over_the_whole_range(value: int) -> None:
    out = io.BytesIO()
    schemaless_writer(out, "long", value)
    assert zigzag_varint(value) == out.getvalue()


@pytest.mark.parametrize("bits", range(1, 64))
def test_zigzag_varint_meets_avros_long_at_every_byte_boundary(bits: int) -> None:
    """Each length of the encoding begins where a 7-bit group is added: both sides, both signs."""
    for value in (2 ** (bits - 1) - 1, 2 ** (bits - 1), -(2 ** (bits - 1)), -(2 ** (bits - 1)) - 1):
        if -(2**63) <= value < 2**63:
            out = io.BytesIO()
            schemaless_writer(out, "long", value)
            assert zigzag_varint(value) == out.getvalue(), value


def test_a_principal_written_again_is_the_same_bytes_and_still_checked() -> None:
    """Principals are written from the bytes kept the first time (they are on every event,
    result and dedup entry): the same bytes as fastavro's each time, and a principal that is
    not one is still refused."""
    principal = Principal(principal_id="svc-kept", roles=frozenset({Role.OPERATOR, Role.OWNER}))
    first = dataclasses.replace(RESULT, principal=principal)
    again = dataclasses.replace(RESULT, command_id="another", principal=Principal(**dataclasses.asdict(principal)))
    for value in (first, again, first):
        assert CODEC.encode(value) == fastavro_encoding(value)
    with pytest.raises(EncodeError, match="expected a frozenset"):
        CODEC.encode(dataclasses.replace(RESULT, principal=Principal(principal_id="x", roles={Role.OWNER})))  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="expected a Principal"):
        CODEC.encode(dataclasses.replace(RESULT, principal="svc-kept"))  # type: ignore[arg-type]


def test_a_large_long_written_again_is_the_same_bytes_and_still_checked() -> None:
    """Large longs' encodings are kept once computed (codec/writer.py): the same bytes each
    time, and a value kept for a long is still refused where an int cannot carry it."""
    times = [1_764_460_800_000, 1_764_460_800_000, 1, 1_764_460_800_001, -(2**63), 2**63 - 1, 1_764_460_800_000]
    for decided_at_ms in times:
        value = dataclasses.replace(RESULT, decided_at_ms=decided_at_ms)
        assert CODEC.encode(value) == fastavro_encoding(value)
    with pytest.raises(EncodeError, match="expected an integer"):
        CODEC.encode(dataclasses.replace(RESULT, decided_at_ms=True))
    with pytest.raises(EncodeError, match="outside the range"):
        CODEC.encode(dataclasses.replace(RESULT, decided_at_ms=2**63))
    # A float equal to a kept long hashes alike: it is still refused, not written from the kept bytes.
    with pytest.raises(EncodeError, match="expected an integer"):
        CODEC.encode(dataclasses.replace(RESULT, decided_at_ms=float(1_764_460_800_000)))  # type: ignore[arg-type]
    CODEC.encode(dataclasses.replace(RESULT, decided_at_ms=2**31))  # kept, as a long
    with pytest.raises(EncodeError, match="outside the range"):
        CODEC.encode(legs.BatchAck(batch_id="b", leg_index=2**31, account_id="a", position=None))


def test_a_principal_kept_by_identity_is_never_written_for_another() -> None:
    """The writer keeps a principal's bytes with the object: an equal principal, another
    principal, and one whose roles may change (not hashable: not kept) each write their own."""
    owner = Principal(principal_id="svc-identity", roles=frozenset({Role.OWNER}))
    changing = Principal(principal_id="svc-identity", roles={Role.OWNER})  # type: ignore[arg-type]
    for principal in (owner, Principal(principal_id="svc-identity", roles=frozenset({Role.OWNER})), owner):
        value = dataclasses.replace(RESULT, principal=principal)
        assert CODEC.encode(value) == fastavro_encoding(value)
    other = dataclasses.replace(RESULT, principal=Principal(principal_id="svc-other", roles=frozenset({Role.ADMIN})))
    assert CODEC.encode(other) == fastavro_encoding(other)
    with pytest.raises(EncodeError, match="expected a frozenset"):
        CODEC.encode(dataclasses.replace(RESULT, principal=changing))
