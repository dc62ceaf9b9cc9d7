"""JSON <-> commands and results. Amounts travel as exact decimal strings with their
currency ("12.34" USD), or as integers of minor units in fields ending in `_minor`;
JSON numbers with a fraction are refused, never rounded."""

from __future__ import annotations

import dataclasses
import typing
import uuid
from typing import Any

from ledger import commands
from ledger.currencies import CURRENCY_EXPONENTS
from ledger.events import CommandResult
from ledger.money import MoneyError, format_amount, parse_amount

COMMAND_TYPES: dict[str, type] = {cls.__name__: cls for cls in commands.COMMAND_TYPES}
MONEY_FIELDS = frozenset({"amount", "lower_limit", "upper_limit"})


class RequestError(ValueError):
    """A request that cannot become a command; answered with 400 and this message."""


def to_command(body: Any) -> commands.Command:
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    type_name = body.get("type")
    cls = COMMAND_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise RequestError(f"type must be one of {sorted(COMMAND_TYPES)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {"command_id": body.get("command_id") or str(uuid.uuid4())}
    currency = body.get("currency")
    known = {"type", "command_id"}
    for field in dataclasses.fields(cls):
        name = field.name
        if name == "command_id":
            continue
        if name in MONEY_FIELDS:
            known.update({name, f"{name}_minor"})
            if name in body or f"{name}_minor" in body:
                values[name] = _money(body, name, currency)
            continue
        known.add(name)
        if name == "legs" and name in body:
            values[name] = [_leg(leg) for leg in _list(body[name], name)]
        elif name in body:
            values[name] = _typed(body[name], hints[name], name)
    unknown = set(body) - known - {"currency"}
    if unknown:
        raise RequestError(f"unknown fields {sorted(unknown)} for {type_name}")
    if "currency" in {field.name for field in dataclasses.fields(cls)} and currency is not None:
        values["currency"] = currency
    try:
        command: commands.Command = cls(**values)
    except TypeError as error:
        raise RequestError(f"{type_name}: {error}") from None
    return command


def _money(body: dict[str, Any], name: str, currency: Any) -> int:
    if f"{name}_minor" in body:
        value = body[f"{name}_minor"]
        if type(value) is not int:
            raise RequestError(f"{name}_minor must be an integer of minor units")
        return value
    text = body[name]
    if not isinstance(text, str):
        raise RequestError(f'{name} must be a decimal string such as "12.34" (or use {name}_minor)')
    if not isinstance(currency, str) or currency not in CURRENCY_EXPONENTS:
        raise RequestError(f"{name} as a decimal string needs a valid currency beside it (or use {name}_minor)")
    try:
        return parse_amount(text, currency)
    except MoneyError as error:
        raise RequestError(str(error)) from None


def _leg(body: Any) -> commands.BatchLeg:
    if not isinstance(body, dict) or set(body) - {"account_id", "amount", "amount_minor", "currency"}:
        raise RequestError("each leg is {account_id, amount (signed decimal string) or amount_minor, currency}")
    return commands.BatchLeg(
        account_id=_typed(body.get("account_id"), str, "leg account_id"),
        amount=_money(body, "amount", body.get("currency")),
        currency=_typed(body.get("currency"), str, "leg currency"),
    )


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise RequestError(f"{name} must be a list")
    return value


def _typed(value: Any, hint: Any, name: str) -> Any:
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    if dict in allowed or any(typing.get_origin(arg) is dict for arg in allowed):
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise RequestError(f"{name} must be an object of strings")
        return value
    for kind in (str, bool, int):
        if kind in allowed and type(value) is kind:
            return value
    raise RequestError(f"{name} has the wrong type")


def result_json(result: CommandResult, currencies: dict[str, str] | None = None) -> dict[str, Any]:
    """A result as JSON; balances get a decimal rendering when the currency is known."""
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
    }
