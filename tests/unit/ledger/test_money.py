"""Exact money: decimal text <-> integer minor units, for every currency exponent."""

from __future__ import annotations

import decimal
import re
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.currencies import CURRENCY_EXPONENTS, exponent, is_currency
from ledger.limits import AMOUNT_MAX
from ledger.money import DECIMAL_TEXT_LENGTH_MAX, MoneyError, format_amount, in_range, is_positive_amount, parse_amount

CURRENCIES = sorted(CURRENCY_EXPONENTS)
EXPONENTS = sorted(set(CURRENCY_EXPONENTS.values()))
ONE_PER_EXPONENT = {
    value: next(code for code in CURRENCIES if CURRENCY_EXPONENTS[code] == value) for value in EXPONENTS
}
amounts = st.integers(min_value=-AMOUNT_MAX, max_value=AMOUNT_MAX)


def test_exponent_table() -> None:
    assert EXPONENTS == [0, 2, 3, 4]
    expected = {"USD": 2, "EUR": 2, "JPY": 0, "KRW": 0, "ISK": 0, "KWD": 3, "BHD": 3, "TND": 3, "CLF": 4, "UYW": 4}
    assert {code: exponent(code) for code in expected} == expected
    for code in ("XAU", "XAG", "XPT", "XPD", "XDR", "XTS", "XXX", "usd", "", "USDD"):
        assert not is_currency(code)
        with pytest.raises(KeyError):
            exponent(code)
    assert all(re.fullmatch(r"[A-Z]{3}", code) for code in CURRENCIES)


@settings(max_examples=300)
@given(minor=amounts, currency=st.sampled_from(CURRENCIES))
@example(minor=AMOUNT_MAX, currency="JPY")
@example(minor=-AMOUNT_MAX, currency="CLF")
@example(minor=0, currency="KWD")
@example(minor=-1, currency="USD")
@example(minor=1, currency="UYW")
def test_format_then_parse_is_identity(minor: int, currency: str) -> None:
    text = format_amount(minor, currency)
    places = CURRENCY_EXPONENTS[currency]
    shape = r"-?[0-9]+" if places == 0 else rf"-?[0-9]+\.[0-9]{{{places}}}"
    assert re.fullmatch(shape, text), text
    assert not re.match(r"-?0[0-9]", text), f"leading zero in {text}"
    assert parse_amount(text, currency) == minor
    assert Fraction(text) * 10**places == minor  # the text means exactly that many minor units


@given(minor=amounts, places=st.sampled_from(EXPONENTS), zeros=st.integers(min_value=1, max_value=6))
def test_trailing_zeros_beyond_the_exponent_are_accepted(minor: int, places: int, zeros: int) -> None:
    currency = ONE_PER_EXPONENT[places]
    text = format_amount(minor, currency)
    padded = text + ("." if places == 0 else "") + "0" * zeros
    if len(padded) <= DECIMAL_TEXT_LENGTH_MAX and len(padded.split(".")[1]) <= 19:
        assert parse_amount(padded, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.34", "USD", 1234),
        ("12.3", "USD", 1230),
        ("12", "USD", 1200),
        ("12.300", "USD", 1230),
        ("0.01", "USD", 1),
        ("-0.01", "USD", -1),
        ("-0", "USD", 0),
        ("007.50", "USD", 750),
        ("12", "JPY", 12),
        ("12.0", "JPY", 12),
        ("1.234", "KWD", 1234),
        ("1.2345", "CLF", 12345),
        ("9223372036854775807", "JPY", AMOUNT_MAX),
        ("-9223372036854775807", "JPY", -AMOUNT_MAX),
        ("92233720368547758.07", "USD", AMOUNT_MAX),
        ("922337203685477.5807", "CLF", AMOUNT_MAX),
        ("0.0000000000000000000", "USD", 0),
    ],
)
def test_parse_examples(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        # More precision than the currency has is never rounded.
        ("12.345", "USD"),
        ("12.301", "USD"),
        ("0.001", "USD"),
        ("12.5", "JPY"),
        ("1.00001", "KWD"),
        ("0.00001", "CLF"),
        ("12.3000000000000000001", "USD"),
        # Beyond 2^63 - 1 minor units, either way.
        ("9223372036854775808", "JPY"),
        ("-9223372036854775808", "JPY"),
        ("92233720368547758.08", "USD"),
        ("99999999999999999999", "JPY"),
        ("9999999999999999999", "JPY"),
        ("9999999999999999999", "USD"),
        # Not a plain decimal number.
        ("", "USD"),
        (" 1", "USD"),
        ("1 ", "USD"),
        ("1\n", "USD"),
        ("\t1", "USD"),
        ("+1", "USD"),
        ("--1", "USD"),
        ("-", "USD"),
        (".5", "USD"),
        ("1.", "USD"),
        ("1..2", "USD"),
        ("1.2.3", "USD"),
        ("1,00", "USD"),
        ("1_000", "USD"),
        ("1e3", "USD"),
        ("1E-2", "USD"),
        ("0x10", "USD"),
        ("NaN", "USD"),
        ("inf", "USD"),
        ("-Infinity", "USD"),
        ("½", "USD"),
        ("12.34 USD", "USD"),
        ("$12.34", "USD"),
        # Digits of other scripts (int() would accept them; a payments API must not).
        ("\u0661\u0662\u0663.\u0664\u0665", "USD"),
        ("\uff11\uff12", "JPY"),
        ("12.\u0663\u0664", "USD"),
        ("\u07c1", "JPY"),
        # Too long even though the value would fit.
        ("0" * 19 + "." + "0" * 19 + "00", "USD"),
        ("00000000000000000001", "JPY"),
    ],
)
def test_parse_rejects(text: str, currency: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount(text, currency)


@pytest.mark.parametrize(
    "value",
    [
        12.34,
        12.0,
        0.1,
        float("nan"),
        float("inf"),
        decimal.Decimal("12.34"),
        Fraction(1, 2),
        1234,
        True,
        b"12.34",
        None,
    ],
)
def test_parse_accepts_text_only(value: object) -> None:
    with pytest.raises(MoneyError):
        parse_amount(value, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["usd", "XAU", "", "US", "USDX", "XXX"])
def test_parse_rejects_unknown_currency(currency: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount("1", currency)


_PLAIN = re.compile(r"-?[0-9]{1,19}(\.[0-9]{1,19})?")


def _oracle(text: str, currency: str) -> int | None:
    """What a careful human would accept: a plain ASCII decimal, exactly representable
    in the currency's minor units, within range."""
    if len(text) > DECIMAL_TEXT_LENGTH_MAX or not _PLAIN.fullmatch(text):
        return None
    scaled = Fraction(text) * 10 ** CURRENCY_EXPONENTS[currency]
    if scaled.denominator != 1 or not -AMOUNT_MAX <= scaled <= AMOUNT_MAX:
        return None
    return int(scaled)


decimal_like = st.one_of(
    st.from_regex(r"-?[0-9]{1,21}(\.[0-9]{0,21})?", fullmatch=True),
    st.text(alphabet=st.sampled_from("0123456789.-+e _,\u0661\uff12\n "), max_size=45),
    st.text(max_size=12),
)


@settings(max_examples=500)
@given(text=decimal_like, currency=st.sampled_from(CURRENCIES))
@example(text="12.305", currency="USD")
@example(text="1" * 19, currency="JPY")
def test_parse_agrees_with_an_exact_oracle(text: str, currency: str) -> None:
    expected = _oracle(text, currency)
    if expected is None:
        with pytest.raises(MoneyError):
            parse_amount(text, currency)
    else:
        assert parse_amount(text, currency) == expected
        assert parse_amount(format_amount(expected, currency), currency) == expected


def test_is_positive_amount() -> None:
    assert is_positive_amount(1)
    assert is_positive_amount(AMOUNT_MAX)
    for value in (0, -1, AMOUNT_MAX + 1, True, False, 1.0, 2.5, "1", decimal.Decimal(1), None):
        assert not is_positive_amount(value), value


def test_in_range() -> None:
    assert in_range(AMOUNT_MAX) and in_range(-AMOUNT_MAX) and in_range(0)
    assert not in_range(AMOUNT_MAX + 1) and not in_range(-AMOUNT_MAX - 1)
    assert AMOUNT_MAX == 2**63 - 1


def test_format_examples() -> None:
    assert format_amount(1234, "USD") == "12.34"
    assert format_amount(5, "USD") == "0.05"
    assert format_amount(-5, "USD") == "-0.05"
    assert format_amount(0, "USD") == "0.00"
    assert format_amount(0, "JPY") == "0"
    assert format_amount(-12, "JPY") == "-12"
    assert format_amount(1, "KWD") == "0.001"
    assert format_amount(12345, "CLF") == "1.2345"
    assert format_amount(AMOUNT_MAX, "USD") == "92233720368547758.07"
    with pytest.raises(KeyError):
        format_amount(1, "XAU")
