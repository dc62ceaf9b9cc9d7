"""Commands from an operator's input: command-line options, CSV cells, JSON objects.

Every route ends in the JSON body the HTTP gateway accepts and goes through its
translation (`gateway/translate.py`), so a command means the same however it is sent:
amounts are exact decimal strings in their currency ("12.34" with currency USD) or
integers of minor units in `<field>_minor`, never floats; a decimal with more places than
the currency has is refused, never rounded.
"""

from __future__ import annotations

import dataclasses
import enum
import getpass
import re
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from foundation.settings import Settings
from gateway import translate
from gateway.translate import COMMAND_TYPES, MONEY_FIELDS, to_command
from ledger.commands import BatchLeg, Command, validate
from ledger.principals import Principal, Role

if TYPE_CHECKING:
    from codec import Codec

INTEGER_DIGITS_MAX = 20  # a long has 19; one more so that an overflow is the codec's clear error
_INTEGER = re.compile(rf"-?[0-9]{{1,{INTEGER_DIGITS_MAX}}}")
# The gateway's translation refuses a body with its own exception: RequestError, or ApiError
# (with a code) since the HTTP contract's gateway/errors.py. Either means "not a command".
TRANSLATION_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(translate, name) for name in ("RequestError", "ApiError") if hasattr(translate, name)
)
# ... and what else a hostile body can raise on the way (codec.EncodeError is a ValueError).
BODY_ERRORS: tuple[type[BaseException], ...] = (*TRANSLATION_ERRORS, TypeError, ValueError, RecursionError)
GENERATED_FIELDS = frozenset({"command_id"})  # chosen here when not given
ENVELOPE_COLUMNS = frozenset({"type", "command_id", "currency"})  # accepted beside any type's own fields


class InputError(ValueError):
    """Input that cannot become a command; the message says why, and `code` names the rule
    (a ledger ErrorCode or the gateway's own code) where there is one."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code


class FieldKind(enum.Enum):
    TEXT = "text"
    OPTIONAL_TEXT = "optional text"
    INTEGER = "integer"
    BOOLEAN = "boolean"  # true or false
    MONEY = "amount"  # a decimal string with its currency, or <name>_minor
    METADATA = "metadata"  # key=value pairs
    LEGS = "legs"  # account:amount:currency


@dataclasses.dataclass(frozen=True, slots=True)
class CommandField:
    name: str
    kind: FieldKind
    required: bool


def command_types() -> list[str]:
    return list(COMMAND_TYPES)


def command_fields(type_name: str) -> list[CommandField]:
    """The fields an operator gives for a command type (command_id is generated)."""
    cls = COMMAND_TYPES[type_name]
    hints = typing.get_type_hints(cls)
    fields = []
    for field in dataclasses.fields(cls):
        if field.name in GENERATED_FIELDS:
            continue
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        fields.append(CommandField(field.name, _kind(field.name, hints[field.name]), required))
    return fields


def _kind(name: str, hint: Any) -> FieldKind:
    if name in MONEY_FIELDS:
        return FieldKind.MONEY
    if name == "legs":
        return FieldKind.LEGS
    if name == "metadata":
        return FieldKind.METADATA
    if hint is int:
        return FieldKind.INTEGER
    if hint is bool:
        return FieldKind.BOOLEAN
    if hint == str | None:
        return FieldKind.OPTIONAL_TEXT
    return FieldKind.TEXT


def column_names(type_name: str) -> set[str]:
    """The CSV columns a command type can be given in (metadata and legs need JSON Lines)."""
    names = set(ENVELOPE_COLUMNS)
    for field in command_fields(type_name):
        if field.kind is FieldKind.MONEY:
            names.update({field.name, f"{field.name}_minor"})
        elif field.kind not in (FieldKind.METADATA, FieldKind.LEGS):
            names.add(field.name)
    return names


def body_from_cells(type_name: str, cells: Mapping[str, str]) -> dict[str, Any]:
    """A JSON body from text cells (CSV): integers parsed, empty cells left out."""
    if type_name not in COMMAND_TYPES:
        raise InputError(f"type {type_name!r} is not one of {', '.join(COMMAND_TYPES)}")
    kinds = {field.name: field.kind for field in command_fields(type_name)}
    body: dict[str, Any] = {"type": type_name}
    for column, text in cells.items():
        if text == "":
            continue
        kind = kinds.get(column)
        if kind in (FieldKind.METADATA, FieldKind.LEGS):
            raise InputError(f"{column} cannot be given in CSV; use JSON Lines")
        if kind is FieldKind.INTEGER or column.endswith("_minor"):
            body[column] = _integer(text, column)
        elif kind is FieldKind.BOOLEAN:
            body[column] = boolean(text, column)
        else:
            body[column] = text
    return body


def boolean(text: str, name: str) -> bool:
    """`true` or `false` (any case), as a CSV cell or a command-line value."""
    value = {"true": True, "false": False}.get(text.strip().lower())
    if value is None:
        raise InputError(f"{name} must be true or false, not {text[:40]!r}")
    return value


def _integer(text: str, name: str) -> int:
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped) is None:
        raise InputError(f"{name} must be an integer of at most {INTEGER_DIGITS_MAX} digits, not {text[:40]!r}")
    return int(stripped)


def leg_from_text(text: str) -> dict[str, str]:
    """`account:amount:currency` (the amount signed: negative debits) as a batch leg's JSON."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise InputError(f"a leg is ACCOUNT:AMOUNT:CURRENCY (amount signed, e.g. alice:-5.00:USD), not {text!r}")
    account_id, amount, currency = parts
    return {"account_id": account_id, "amount": amount, "currency": currency}


def metadata_from_pairs(pairs: list[str]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise InputError(f"metadata is KEY=VALUE, not {pair!r}")
        metadata[key] = value
    return metadata


def operator_principal(settings: Settings) -> Principal:
    """Who the operator's CLI acts as: `cli_principal_id` (default `cli:<OS user>`) with the
    roles of `cli_principal_roles`. The CLI produces to Kafka directly, so its Kafka
    credentials (ACLs on the commands topic) are what vouch for this claim."""
    roles = frozenset(Role(role.strip().upper()) for role in settings.cli_principal_roles.split(",") if role.strip())
    return Principal(principal_id=settings.cli_principal_id or f"cli:{getpass.getuser()}", roles=roles)


def command_from_body(body: Any, codec: Codec, *, principal: Principal) -> Command:
    """The command a JSON body describes, checked as the gateway checks it: translated,
    passing the ledger's stateless rules (`ledger.commands.validate`, the code kept) and
    encodable; InputError otherwise. Only what needs the ledger's state (funds, limits,
    existence) is left to the ledger: like the gateway, nothing it would refuse on sight
    is sent."""
    try:
        command = to_command(body, principal=principal)
        codec.encode(command)  # what the schema cannot carry (a long past 64 bits, a wrong type)
    except BODY_ERRORS as error:
        code = getattr(error, "code", None)
        raise InputError(str(getattr(error, "message", error)) or type(error).__name__, code=_code_text(code)) from None
    rejection = validate(command)
    if rejection is not None:
        raise InputError(rejection.message, code=rejection.code.value)
    return command


def _code_text(code: Any) -> str | None:
    return None if code is None else str(getattr(code, "value", code))


def currencies_of(command: Command, body: Mapping[str, Any]) -> dict[str, str]:
    """account → currency for the accounts a command's result reports, where known."""
    currency = getattr(command, "currency", None) or body.get("currency")
    legs: list[BatchLeg] = getattr(command, "legs", [])
    known = {leg.account_id: leg.currency for leg in legs}
    if isinstance(currency, str):
        for name in ("account_id", "from_account_id", "to_account_id"):
            account = getattr(command, name, None)
            if isinstance(account, str):
                known[account] = currency
    return known
