"""Exact money: integer minor units, bounded, parsed from and formatted to decimal strings.

No float appears anywhere: amounts are `int` minor units of a currency whose exponent
comes from ISO 4217 (USD 2: "12.34" is 1234; JPY 0; KWD 3).
"""

from __future__ import annotations

import re

from ledger.currencies import CURRENCY_EXPONENTS
from ledger.limits import AMOUNT_MAX

_DECIMAL = re.compile(r"(-?)(\d{1,19})(?:\.(\d{1,19}))?", re.ASCII)  # ASCII: \d would match any script's digits
DECIMAL_TEXT_LENGTH_MAX = 41  # sign, 19 integer digits, point, up to 19 fraction digits, slack


class MoneyError(ValueError):
    """Input that is not an exact, in-range amount of the given currency."""


def in_range(amount: int) -> bool:
    return -AMOUNT_MAX <= amount <= AMOUNT_MAX


def is_positive_amount(amount: object) -> bool:
    """A transferable amount: an int (not bool) in 1..AMOUNT_MAX."""
    return type(amount) is int and 0 < amount <= AMOUNT_MAX


def parse_amount(text: str, currency: str) -> int:
    """Parse a decimal string into minor units exactly ("12.30" USD -> 1230).

    More fraction digits than the currency has are accepted only when they are zeros
    ("12.300" USD is 1230; "12.305" USD is an error, never rounded).
    """
    if currency not in CURRENCY_EXPONENTS:
        raise MoneyError(f"unknown currency {currency!r}")
    if not isinstance(text, str) or len(text) > DECIMAL_TEXT_LENGTH_MAX:
        raise MoneyError("amount must be a decimal string of at most 41 characters")
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise MoneyError(f"amount {text!r} is not a plain decimal number such as 12.34")
    sign, whole, fraction = match.groups()
    fraction = fraction or ""
    exponent = CURRENCY_EXPONENTS[currency]
    if len(fraction) > exponent:
        if fraction[exponent:].strip("0"):
            raise MoneyError(f"{currency} has {exponent} decimal places; {text!r} has more")
        fraction = fraction[:exponent]
    minor = int(whole + fraction.ljust(exponent, "0"))
    if sign:
        minor = -minor
    if not in_range(minor):
        raise MoneyError(f"amount {text!r} is outside the supported range")
    return minor


def format_amount(minor: int, currency: str) -> str:
    """Minor units to a decimal string with exactly the currency's decimal places."""
    if type(minor) is not int:
        raise MoneyError(f"minor units must be an int, not {type(minor).__name__}")
    exponent = CURRENCY_EXPONENTS[currency]
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor))
    if exponent == 0:
        return sign + digits
    digits = digits.rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"
