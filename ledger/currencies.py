"""ISO 4217 currencies and their minor-unit exponents (digits after the decimal point).

Active codes as of ISO 4217 amendment 179. Funds codes and precious metals without a
minor unit (XAU, XAG, XPT, XPD, XDR, XTS, XXX) are left out: a ledger entry needs a
definite exponent.
"""

from __future__ import annotations

from types import MappingProxyType

from ledger.errors import InvariantViolation

_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD "
    "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD "
    "NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED "
    "VES WST XCD XCG YER ZAR ZMW ZWG"
)


def _table() -> dict[str, int]:
    table: dict[str, int] = {}
    for exponent, codes in ((0, _EXPONENT_0), (2, _EXPONENT_2), (3, _EXPONENT_3), (4, _EXPONENT_4)):
        for code in codes.split():
            if code in table:
                raise InvariantViolation(f"currency {code} is listed twice in the exponent table")
            table[code] = exponent
    return table


CURRENCY_EXPONENTS = MappingProxyType(_table())


def is_currency(code: str) -> bool:
    return code in CURRENCY_EXPONENTS


def exponent(code: str) -> int:
    """Digits after the decimal point; KeyError for a code that is not in the table."""
    return CURRENCY_EXPONENTS[code]
