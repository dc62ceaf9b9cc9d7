"""Request bodies -> commands, results -> JSON. Pure: no I/O.

Amounts travel as exact decimal strings with their currency ("12.34" USD), or as integers
of minor units in fields ending in `_minor`; JSON numbers with a fraction are refused,
never rounded. Everything a command can carry is checked here before it reaches the
codec (types, 64-bit integers, valid Unicode, bounds), then the ledger's own stateless
checks run (`ledger.commands.validate`), so no body can make the gateway fail and none
the ledger would refuse without looking at its state is produced: what is wrong is an
`ApiError` with a stable code.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import re
import typing
import uuid
from typing import Any

from gateway.errors import ApiError, GatewayCode
from gateway.limits import INTEGER_MAX, INTEGER_MIN, JSON_DEPTH_MAX, LEGS_MAX, METADATA_ENTRIES_PER_COMMAND_MAX
from gateway.principals import PRINCIPAL_FIELD, build, client_fields
from ledger import commands
from ledger.currencies import CURRENCY_EXPONENTS
from ledger.errors import ErrorCode
from ledger.events import CommandResult
from ledger.limits import AMOUNT_MAX, DEDUP_ID_LENGTH_MAX
from ledger.money import MoneyError, format_amount, parse_amount
from ledger.principals import Principal

COMMAND_TYPES: dict[str, type[commands.Command]] = {cls.__name__: cls for cls in commands.COMMAND_TYPES}
# Money fields, and the ledger's code for an amount in them that cannot be money.
MONEY_FIELDS: dict[str, ErrorCode] = {
    "amount": ErrorCode.INVALID_AMOUNT,
    "lower_limit": ErrorCode.INVALID_LIMITS,
    "upper_limit": ErrorCode.INVALID_LIMITS,
}
MINOR_SUFFIX = "_minor"
LEG_FIELDS = frozenset({"account_id", "amount", "amount_minor", "currency"})
INTEGER_DIGITS_MAX = 40  # a whole number written as 1.0e3 is made an int only up to this many digits
_JSON_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


# -- JSON -------------------------------------------------------------------------------------


def parse_json(raw: bytes) -> Any:
    """A request body as JSON: UTF-8, nested at most JSON_DEPTH_MAX deep, no NaN or
    Infinity, no repeated keys, no lone surrogates."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(GatewayCode.BAD_JSON, "the body is not UTF-8") from None
    depth = json_depth(text)
    if depth > JSON_DEPTH_MAX:
        raise ApiError(
            GatewayCode.TOO_DEEP,
            f"the body nests objects and arrays deeper than {JSON_DEPTH_MAX} levels",
            details={"depth_max": JSON_DEPTH_MAX},
        )
    try:
        value = json.loads(
            text, parse_float=_exact_number, parse_constant=_no_constant, object_pairs_hook=_object_without_repeats
        )
    except ValueError as error:  # JSONDecodeError, integers of more digits than Python converts
        raise ApiError(GatewayCode.BAD_JSON, f"the body is not JSON: {error}") from None
    if not _valid_unicode(value):
        raise ApiError(GatewayCode.BAD_JSON, "the body holds a string that is not valid Unicode (a lone surrogate)")
    return value


def json_depth(text: str) -> int:
    """How deep objects and arrays nest in `text` (strings skipped); stops counting past
    the bound, so it costs one pass at most."""
    depth = deepest = 0
    for match in _JSON_STRUCTURE.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > JSON_DEPTH_MAX:
                break
        elif token in "]}":
            depth -= 1
    return deepest


def _exact_number(text: str) -> int | decimal.Decimal:
    """A JSON number written with a point or an exponent, exactly: an int if it is a whole
    number of a sane size (JSON Schema counts 12.0 as an integer), else a Decimal, which
    every field refuses (money is a decimal string or an integer, never rounded)."""
    number = decimal.Decimal(text)
    if number.adjusted() <= INTEGER_DIGITS_MAX and number == number.to_integral_value():
        return int(number)
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return value


def _valid_unicode(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_valid_unicode(key) and _valid_unicode(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_valid_unicode(item) for item in value)
    return True


# -- commands ---------------------------------------------------------------------------------


def accepted_fields(cls: type[commands.Command]) -> frozenset[str]:
    """The body fields a command type accepts."""
    names = {"type"}
    for field in client_fields(cls):
        names.add(field.name)
        if field.name in MONEY_FIELDS:
            names.add(field.name + MINOR_SUFFIX)
    return frozenset(names)


def is_required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def command_type(body: Any) -> type[commands.Command]:
    """The command type a decoded JSON body names (so who may send it can be decided first)."""
    if not isinstance(body, dict):
        raise ApiError(GatewayCode.BAD_REQUEST, "the body must be a JSON object")
    return _command_type(body.get("type"))


def to_command(body: Any, *, principal: Principal, idempotency_key: str | None = None) -> commands.Command:
    """A command from a decoded JSON body, checked as far as it can be without state, made
    for the verified principal; the Idempotency-Key header, if sent, is the dedup id."""
    cls = command_type(body)
    if PRINCIPAL_FIELD in body:
        raise ApiError(
            GatewayCode.PRINCIPAL_IN_BODY,
            "the principal is the one your credential proves; a body cannot set it",
            details={"field": PRINCIPAL_FIELD},
        )
    allowed = accepted_fields(cls)
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            GatewayCode.UNKNOWN_FIELD,
            f"unknown fields {unknown} for {cls.__name__}",
            details={"fields": unknown, "allowed": sorted(allowed)},
        )
    _check_required(cls, body)
    hints = typing.get_type_hints(cls)
    currency = _pricing_currency(cls, body)
    values: dict[str, Any] = {}
    for field in client_fields(cls):
        name = field.name
        if name == "command_id":
            values[name] = _optional_text(body, name) or str(uuid.uuid4())
        elif name == "dedup_id":
            values[name] = _dedup_id(body, idempotency_key)
        elif name in MONEY_FIELDS:
            if name in body or name + MINOR_SUFFIX in body:
                values[name] = _money(body, name, currency=currency)
        elif name not in body:
            continue
        elif name == "legs":
            values[name] = _legs(body[name])
        elif name == "metadata":
            values[name] = _metadata(body[name])
        else:
            values[name] = _typed(body[name], hints[name], name)
    if idempotency_key is not None and "dedup_id" not in values:
        raise ApiError(
            GatewayCode.IDEMPOTENCY_KEY_CONFLICT, f"{cls.__name__} changes nothing and takes no Idempotency-Key"
        )
    command = build(cls, principal=principal, **values)
    # The ledger's own stateless checks, before anything is produced: a command they refuse
    # is answered at once (also when the client does not wait), and never remembered.
    rejection = commands.validate(command)
    if rejection is not None:
        raise ApiError(rejection.code, rejection.message)
    return command


def _check_required(cls: type[commands.Command], body: dict[str, Any]) -> None:
    for field in client_fields(cls):
        if not is_required(field) or field.name in ("command_id", "dedup_id"):
            continue
        if field.name in MONEY_FIELDS:
            if field.name not in body and field.name + MINOR_SUFFIX not in body:
                raise _missing(f"{field.name} (or {field.name}{MINOR_SUFFIX})")
        elif field.name not in body:
            raise _missing(field.name)


def _command_type(name: Any) -> type[commands.Command]:
    cls = COMMAND_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        if name is None:
            raise _missing("type")
        raise ApiError(
            GatewayCode.UNKNOWN_COMMAND_TYPE,
            f"type must be one of {sorted(COMMAND_TYPES)}",
            details={"allowed": sorted(COMMAND_TYPES)},
        )
    return cls


def _missing(name: str) -> ApiError:
    return ApiError(GatewayCode.MISSING_FIELD, f"{name} is required", details={"field": name})


def _wrong(name: str, expected: str) -> ApiError:
    return ApiError(GatewayCode.BAD_REQUEST, f"{name} must be {expected}", details={"field": name})


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise _wrong(name, "a string")
    return value


def _dedup_id(body: dict[str, Any], idempotency_key: str | None) -> str:
    in_body = _optional_text(body, "dedup_id")
    if idempotency_key is None:
        if in_body is None:
            raise ApiError(
                GatewayCode.DEDUP_ID_REQUIRED,
                "a command that changes something needs a dedup id: the dedup_id field or the Idempotency-Key header",
                details={"field": "dedup_id"},
            )
        return in_body
    if not commands.is_identifier(idempotency_key, DEDUP_ID_LENGTH_MAX):
        raise ApiError(
            GatewayCode.BAD_IDEMPOTENCY_KEY,
            f"Idempotency-Key must be 1..{DEDUP_ID_LENGTH_MAX} printable ASCII characters without spaces or '|'",
        )
    if in_body is not None and in_body != idempotency_key:
        raise ApiError(GatewayCode.IDEMPOTENCY_KEY_CONFLICT, "Idempotency-Key and dedup_id differ; send one of them")
    return idempotency_key


def _pricing_currency(cls: type[commands.Command], body: dict[str, Any]) -> str | None:
    """The currency decimal amounts are given in: the command's own, or for the commands
    that carry none the gateway's `currency` field (checked here, as the ledger cannot)."""
    value = body.get("currency")
    if value is not None and not isinstance(value, str):
        raise _wrong("currency", "an ISO 4217 code such as USD")
    return value


def _money(body: dict[str, Any], name: str, *, currency: str | None) -> int:
    code = MONEY_FIELDS[name]
    minor_name = name + MINOR_SUFFIX
    if name in body and minor_name in body:
        raise ApiError(GatewayCode.BAD_REQUEST, f"give {name} or {minor_name}, not both", details={"field": name})
    if minor_name in body:
        value = body[minor_name]
        if type(value) is not int:
            raise _wrong(minor_name, "an integer of minor units")
        if not -AMOUNT_MAX <= value <= AMOUNT_MAX:
            raise ApiError(code, f"{minor_name} must be within ±{AMOUNT_MAX}", details={"field": minor_name})
        return value
    return _decimal(body[name], name, currency=currency, code=code)


def _decimal(text: Any, name: str, *, currency: str | None, code: ErrorCode) -> int:
    if not isinstance(text, str):
        raise _wrong(name, f'a decimal string such as "12.34" (or use {name}{MINOR_SUFFIX})')
    if currency is None or currency not in CURRENCY_EXPONENTS:
        raise ApiError(
            ErrorCode.INVALID_CURRENCY,
            f"{name} as a decimal string needs a valid currency beside it (or use {name}{MINOR_SUFFIX})",
            details={"field": "currency"},
        )
    try:
        return parse_amount(text, currency)
    except MoneyError as error:
        raise ApiError(code, str(error), details={"field": name}) from None


def _legs(value: Any) -> list[commands.BatchLeg]:
    if not isinstance(value, list):
        raise _wrong("legs", "a list")
    if len(value) > LEGS_MAX:
        raise ApiError(
            GatewayCode.TOO_MANY_LEGS, f"a batch has at most {LEGS_MAX} legs", details={"legs_max": LEGS_MAX}
        )
    return [_leg(leg) for leg in value]


def _leg(body: Any) -> commands.BatchLeg:
    if not isinstance(body, dict) or set(body) - LEG_FIELDS:
        raise _wrong("legs", "a list of {account_id, amount (a signed decimal string) or amount_minor, currency}")
    for name in ("account_id", "currency"):
        if name not in body:
            raise _missing(f"legs[].{name}")
        if not isinstance(body[name], str):
            raise _wrong(f"legs[].{name}", "a string")
    if "amount" not in body and "amount_minor" not in body:
        raise _missing("legs[].amount (or legs[].amount_minor)")
    return commands.BatchLeg(
        account_id=body["account_id"],
        amount=_money(body, "amount", currency=body["currency"]),
        currency=body["currency"],
    )


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise _wrong("metadata", "an object of strings")
    if len(value) > METADATA_ENTRIES_PER_COMMAND_MAX:
        raise ApiError(
            GatewayCode.TOO_MANY_METADATA_ENTRIES,
            f"metadata has at most {METADATA_ENTRIES_PER_COMMAND_MAX} entries",
            details={"entries_max": METADATA_ENTRIES_PER_COMMAND_MAX},
        )
    return value


def _typed(value: Any, hint: Any, name: str) -> Any:
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    if str in allowed and isinstance(value, str):
        return value
    if bool in allowed and type(value) is bool:
        return value
    if int in allowed and type(value) is int:
        if not INTEGER_MIN <= value <= INTEGER_MAX:
            raise _wrong(name, "a 64-bit integer")
        return value
    expected = " or ".join("null" if kind is type(None) else kind.__name__ for kind in allowed)
    raise _wrong(name, f"of type {expected}")


# -- results ----------------------------------------------------------------------------------


def checked_currencies(command: commands.Command) -> dict[str, str]:
    """The currency of each account a command names, where the ledger checks it against
    the account (so a result's positions can be rendered as decimals)."""
    if isinstance(command, commands.Batch):
        return {leg.account_id: leg.currency for leg in command.legs if leg.currency in CURRENCY_EXPONENTS}
    currency = getattr(command, "currency", None)
    if not isinstance(currency, str) or currency not in CURRENCY_EXPONENTS:
        return {}
    return {
        getattr(command, field.name): currency
        for field in dataclasses.fields(command)
        if field.name.endswith("account_id") and field.name != "parent_account_id"
    }


def result_json(result: CommandResult, currencies: dict[str, str] | None = None) -> dict[str, Any]:
    """A result as JSON; positions get a decimal rendering where the currency is known."""
    currencies = currencies or {}
    positions = []
    for position in result.positions:
        entry: dict[str, Any] = {
            "account_id": position.account_id,
            "sequence": position.sequence,
            "balance_minor": position.balance,
            "available_minor": position.available,
        }
        currency = currencies.get(position.account_id)
        if currency is not None:
            entry["currency"] = currency
            entry["balance"] = format_amount(position.balance, currency)
            entry["available"] = format_amount(position.available, currency)
        positions.append(entry)
    return {
        "command_id": result.command_id,
        "dedup_id": result.dedup_id,
        "command_type": result.command_type,
        "status": result.status.value,
        "code": None if result.code is None else result.code.value,
        "message": result.message,
        "reference_id": result.reference_id,
        "positions": positions,
        "replayed": result.replayed,
        "original_command_id": result.original_command_id,
        "decided_at_ms": result.decided_at_ms,
        "queried": None if result.queried is None else result_json(result.queried, currencies),
        "principal_id": result.principal.principal_id,
    }
