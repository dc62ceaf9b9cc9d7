"""Every current schema reads data written with every released version and the other way
round (codec.compatibility), and the check itself catches the changes that break it."""

from __future__ import annotations

import copy
import io
from typing import Any

import fastavro
import pytest

from codec import Codec
from codec.compatibility import check_all, check_pair
from codec.schemas import RELEASED_DIR, SCHEMA_ROOT, load_folder, released_versions
from ledger.commands import Withdraw
from ledger.principals import ANONYMOUS, Principal, Role

CURRENT = load_folder(SCHEMA_ROOT, "current")
CODEC = Codec()


def test_there_is_a_released_version() -> None:
    assert released_versions(), "schemas/avro/released/ must hold the released versions"


def test_current_schemas_are_compatible_both_ways_with_every_release() -> None:
    assert check_all() == []


def _deposit() -> dict[str, Any]:
    return copy.deepcopy(CURRENT["streamwallet.command.Deposit"].expanded)


def _event() -> dict[str, Any]:
    return copy.deepcopy(CURRENT["streamwallet.event.AccountEvent"].expanded)


def _with_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    schema["fields"].append(field)
    return schema


def _without_field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    schema["fields"] = [field for field in schema["fields"] if field["name"] != name]
    return schema


def _retyped(schema: dict[str, Any], name: str, new_type: Any) -> dict[str, Any]:
    for field in schema["fields"]:
        if field["name"] == name:
            field["type"] = new_type
    return schema


def _enum_symbols(schema: dict[str, Any], field_name: str, symbols: list[str], *, default: bool) -> dict[str, Any]:
    for field in schema["fields"]:
        if field["name"] == field_name:
            field["type"]["symbols"] = symbols
            if not default:
                field["type"].pop("default", None)
    return schema


@pytest.mark.parametrize(
    ("old", "new", "compatible"),
    [
        (_deposit(), _with_field(_deposit(), {"name": "note", "type": "string", "default": ""}), True),
        (_deposit(), _with_field(_deposit(), {"name": "note", "type": "string"}), False),  # no default
        (_with_field(_deposit(), {"name": "note", "type": "string"}), _deposit(), True),  # the reader ignores it
        (_deposit(), _without_field(_deposit(), "amount"), True),  # new readers skip it...
        (_without_field(_deposit(), "amount"), _deposit(), False),  # ...but old data lacks it
        (_deposit(), _retyped(_deposit(), "amount", "string"), False),
        (_deposit(), _retyped(_deposit(), "amount", "double"), True),  # long promotes to double
    ],
)
def test_the_check_tells_compatible_from_breaking(old: dict[str, Any], new: dict[str, Any], compatible: bool) -> None:
    """old writer -> new reader (backward)."""
    assert (check_pair(old, new, samples=20, seed=1) == []) is compatible


def test_a_new_enum_symbol_reads_as_unknown_in_old_readers_but_breaks_without_a_default() -> None:
    kinds = next(s for s in _event()["fields"] if s["name"] == "kind")["type"]["symbols"]
    newer = _enum_symbols(_event(), "kind", [*kinds, "SOMETHING_NEW"], default=True)
    assert check_pair(newer, _event(), samples=300, seed=2) == []  # forward: the old reader has a default
    older_without_default = _enum_symbols(_event(), "kind", kinds, default=False)
    assert check_pair(newer, older_without_default, samples=300, seed=2) != []


def test_a_v1_command_decodes_to_the_anonymous_principal_and_v1_readers_skip_the_principal() -> None:
    """Issue 12: commands carry a principal, added after v1 with a default. A command written
    with the released schema decodes to the anonymous principal (no id, no role); one written
    now is read by a v1 reader without it."""
    released = load_folder(SCHEMA_ROOT / RELEASED_DIR / "v1", "v1")["streamwallet.command.Withdraw"]
    fields = {"command_id": "c-1", "dedup_id": "w-1", "account_id": "alice", "amount": 5, "currency": "USD"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, released.parsed_plain, {**fields, "metadata": {}})
    decoded = CODEC.decode(b"\xc3\x01" + released.fingerprint + body.getvalue())
    assert decoded == Withdraw(**fields, principal=ANONYMOUS)  # type: ignore[arg-type]

    alice = Principal(principal_id="alice", roles=frozenset({Role.AUDITOR, Role.OWNER}))
    encoded = CODEC.encode(Withdraw(**fields, principal=alice))  # type: ignore[arg-type]
    current = CODEC.schema(Withdraw).parsed_plain
    read = fastavro.schemaless_reader(io.BytesIO(encoded[10:]), current, released.parsed_plain)
    assert read == {**fields, "metadata": {}}
    assert CODEC.decode(encoded).principal == alice
    assert CODEC.to_record(Withdraw(**fields, principal=alice))["principal"]["roles"] == ["AUDITOR", "OWNER"]  # type: ignore[arg-type]
