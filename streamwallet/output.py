"""What the operator's commands print: JSON on request, amounts in their currency.

Amounts are integer minor units everywhere underneath. In JSON a money field appears twice:
`<name>_minor`, the integer, and `<name>`, the exact decimal string in the currency
(`"balance_minor": 1234, "balance": "12.34"`), as the gateway answers.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from ledger.limits import AMOUNT_MAX
from ledger.money import format_amount


def print_json(value: Any) -> None:
    """One JSON document on one line of stdout, flushed (so `tail` can be piped)."""
    print(json.dumps(value, ensure_ascii=False, default=_json_default), flush=True)


def print_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return bytes_json(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def bytes_json(value: bytes) -> dict[str, Any]:
    """Bytes as JSON: the text when it is UTF-8, always the exact bytes in base64."""
    try:
        text: str | None = value.decode()
    except UnicodeDecodeError:
        text = None
    return {"length": len(value), "text": text, "base64": base64.b64encode(value).decode()}


def with_decimals(record: Mapping[str, Any], currency: str, names: Iterable[str]) -> dict[str, Any]:
    """`record` with each money field `name` as `name_minor` (int) and `name` (decimal string)."""
    out = dict(record)
    for name in names:
        minor = out.pop(name, None)
        if minor is None:
            continue
        out[f"{name}_minor"] = minor
        out[name] = format_amount(minor, currency)
    return out


def iso_time(milliseconds: int) -> str:
    """Milliseconds since the epoch as ISO 8601 in UTC (2026-11-28T20:35:33.914Z)."""
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def amount_text(minor: int, currency: str, *, signed: bool = False) -> str:
    text = format_amount(minor, currency)
    return f"+{text}" if signed and minor > 0 else text


def limit_text(minor: int, currency: str) -> str:
    """A limit, or "none" for the unbounded one (±AMOUNT_MAX)."""
    return "none" if abs(minor) == AMOUNT_MAX else format_amount(minor, currency)


_NUMBER = re.compile(r"[+-]?[0-9][0-9.]*")


def table(rows: list[list[str]], *, indent: str = "  ") -> str:
    """Left-aligned columns, numbers right-aligned."""
    if not rows:
        return ""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]

    def cell(text: str, width: int) -> str:
        return text.rjust(width) if _NUMBER.fullmatch(text) else text.ljust(width)

    def line(row: list[str]) -> str:
        return indent + "  ".join(cell(text, width) for text, width in zip(row, widths, strict=True)).rstrip()

    return "\n".join(line(row) for row in rows)
