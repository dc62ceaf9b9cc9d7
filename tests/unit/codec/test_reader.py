"""The generated Avro readers against fastavro's: the same record for every record type's
bytes, and bad bytes refused with DecodeError — never another exception, and never a
record fastavro would read differently."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec import DecodeError
from codec.avro import HEADER_LENGTH
from codec.golden import EXAMPLES
from codec.reader import ReaderBuilder, ReadError
from codec.schemas import RELEASED_DIR, SCHEMA_ROOT, load_folder
from codec.writer import zigzag_varint
from ledger import commands
from ledger.events import AccountEvent, CommandResult
from tests.unit.codec.test_codec import CODEC, RECORD_CLASSES, strategy_for


def fastavro_record(cls: type, data: bytes) -> Any:
    buffer = io.BytesIO(data)
    buffer.seek(HEADER_LENGTH)
    record = schemaless_reader(buffer, CODEC.schema(cls).parsed_plain, None)
    if buffer.tell() != len(data):
        raise ValueError("bytes after the record")
    return record


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=[cls.__name__ for cls in RECORD_CLASSES])
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_the_same_record_as_fastavro(cls: type, data: st.DataObject) -> None:
    value = data.draw(strategy_for(cls))
    encoded = CODEC.encode(value)
    assert CODEC.decode_record(encoded) == fastavro_record(cls, encoded)
    assert CODEC.decode(encoded) == value


def corruptions() -> st.SearchStrategy[tuple[str, int, int]]:
    """(how, where, byte): overwrite, insert or delete a byte, or cut the bytes short."""
    return st.tuples(
        st.sampled_from(["overwrite", "insert", "delete", "truncate"]), st.integers(0, 10_000), st.integers(0, 255)
    )


def corrupt(data: bytes, how: str, where: int, byte: int) -> bytes:
    body = len(data) - HEADER_LENGTH
    at = HEADER_LENGTH + where % max(body, 1)
    if how == "overwrite":
        return data[:at] + bytes([byte]) + data[at + 1 :]
    if how == "insert":
        return data[:at] + bytes([byte]) + data[at:]
    if how == "delete":
        return data[:at] + data[at + 1 :]
    return data[:at]


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=[cls.__name__ for cls in RECORD_CLASSES])
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data(), changes=st.lists(corruptions(), min_size=1, max_size=3))
def test_corrupted_bytes_are_refused_or_read_as_fastavro_reads_them(
    cls: type, data: st.DataObject, changes: list[tuple[str, int, int]]
) -> None:
    encoded = CODEC.encode(data.draw(strategy_for(cls)))
    for change in changes:
        encoded = corrupt(encoded, *change)
    try:
        ours = CODEC.decode_record(encoded)
    except DecodeError:
        return  # refused: fastavro may read it or not, what matters is that nothing else escapes
    assert ours == fastavro_record(cls, encoded)


def body_of(value: object) -> bytes:
    return CODEC.encode(value)[HEADER_LENGTH:]


DEPOSIT = commands.Deposit(command_id="c", dedup_id="d", account_id="a", amount=5, currency="USD")
READ_DEPOSIT = ReaderBuilder().record_reader(CODEC.schema(commands.Deposit).parsed_plain)


def read_deposit(body: bytes) -> Any:
    return READ_DEPOSIT.read(body, 0)


def test_a_long_of_any_length_up_to_ten_bytes_is_read() -> None:
    for amount in (0, -1, 63, -64, 64, 8191, 2**31, -(2**63), 2**63 - 1):
        assert read_deposit(body_of(dataclasses.replace(DEPOSIT, amount=amount)))["amount"] == amount


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "end inside the record"),
        (body_of(DEPOSIT)[:-1], "end inside the record"),
        (body_of(DEPOSIT) + b"\x00", "1 bytes after the record"),
        (b"\x03c", "a length of -2"),  # a negative string length
        (b"\x02c\x02d\x02a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "longer than ten bytes"),
        (b"\x02c\x02d\x02a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", "past 64 bits"),
        (b"\x02\xff", "not UTF-8"),
        (b"\x7e", "a length of 63"),  # longer than what is left
    ],
)
def test_bad_bytes_are_refused_with_their_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ReadError, match=reason):
        read_deposit(body)


EVENT = next(example for example in EXAMPLES if type(example) is AccountEvent)
RESULT = dataclasses.replace(
    next(example for example in EXAMPLES if type(example) is CommandResult), queried=None, reference_id="r"
)


def test_an_enum_index_or_union_branch_the_schema_lacks_is_refused() -> None:
    body = bytearray(body_of(EVENT))
    kind_at = 1 + len(EVENT.account_id.encode()) + len(zigzag_varint(EVENT.sequence))
    body[kind_at] = 0x7E  # index 63: EventKind has fewer symbols
    with pytest.raises(ReadError, match="enum index 63"):
        ReaderBuilder().record_reader(CODEC.schema(AccountEvent).parsed_plain).read(bytes(body), 0)
    encoded = bytearray(body_of(RESULT))
    branch_at = encoded.index(b"\x02\x02r")  # the value branch of reference_id, then "r"
    encoded[branch_at] = 0x04  # branch 2 of a two-branch union
    with pytest.raises(ReadError, match="union branch 2"):
        ReaderBuilder().record_reader(CODEC.schema(CommandResult).parsed_plain).read(bytes(encoded), 0)


def test_records_nested_without_end_are_refused_not_a_crash() -> None:
    """CommandResult.queried holds a CommandResult: bytes may nest them past any limit."""
    nested = RESULT
    for _ in range(50):
        nested = dataclasses.replace(RESULT, queried=nested)
    assert CODEC.decode(CODEC.encode(nested)) == nested
    # One level by the writer: the outer result's fields before `queried`, its value branch
    # and the inner result, then the outer's fields after it. Repeated by hand, 5,000 deep.
    inner = body_of(dataclasses.replace(RESULT, command_id="inner"))
    prefix, found, suffix = body_of(
        dataclasses.replace(RESULT, queried=dataclasses.replace(RESULT, command_id="inner"))
    ).partition(b"\x02" + inner)
    assert found
    deep = CODEC.encode(RESULT)[:HEADER_LENGTH] + (prefix + b"\x02") * 5_000 + inner + suffix * 5_000
    with pytest.raises(DecodeError, match="nested too deep"):
        CODEC.decode(deep)


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=[cls.__name__ for cls in RECORD_CLASSES])
@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_decode_values_are_the_records_values_in_schema_order(cls: type, data: st.DataObject) -> None:
    encoded = CODEC.encode(data.draw(strategy_for(cls)))
    record = CODEC.decode_record(encoded)
    assert CODEC.decode_values(encoded) == [record[field.name] for field in dataclasses.fields(cls)]


def test_a_record_of_a_released_version_is_resolved_into_the_current_fields() -> None:
    """An older writer schema goes through fastavro's resolution, and its values come in the
    current schema's order, with the defaults of the fields it lacked."""
    released = load_folder(SCHEMA_ROOT / RELEASED_DIR / "v1", "v1")["streamwallet.command.Withdraw"]
    fields = {"command_id": "c-1", "dedup_id": "w-1", "account_id": "alice", "amount": 5, "currency": "USD"}
    body = io.BytesIO()
    schemaless_writer(body, released.parsed_plain, {**fields, "metadata": {}})
    values = CODEC.decode_values(b"\xc3\x01" + released.fingerprint + body.getvalue())
    names = [field["name"] for field in CODEC.schema(commands.Withdraw).parsed_plain["fields"]]
    assert dict(zip(names, values, strict=True)) == {
        **fields,
        "metadata": {},
        "principal": {"principal_id": "", "roles": []},
    }
