"""Reads, forwarded to the query service: only the documented routes, with their query
parameters checked and re-encoded, the account id re-quoted as one path segment (never
the decoded path: `x?y`, `p#q`, `%41` and `../metrics` are account ids here, nothing
else), and every answer mapped onto the API's error body. Money in the answers gains
a decimal rendering in the account's currency."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from multidict import MultiMapping
from yarl import URL

from gateway import authorization
from gateway.errors import ApiError, GatewayCode
from gateway.limits import (
    ACCOUNT_CURSOR_LENGTH_MAX,
    ACCOUNT_PAGE_ACCOUNTS_MAX,
    AT_MS_MAX,
    DAY_MAX,
    DAY_MIN,
    HISTORY_PAGE_EVENTS_MAX,
    INTEGER_MAX,
    QUERY_PARAMETER_LENGTH_MAX,
    READ_TIMEOUT_S,
    READS_IN_FLIGHT_MAX,
    ROLLUPS_IN_FLIGHT_MAX,
)
from ledger.commands import is_identifier
from ledger.currencies import CURRENCY_EXPONENTS
from ledger.errors import ErrorCode
from ledger.limits import ACCOUNT_ID_LENGTH_MAX
from ledger.money import format_amount
from ledger.principals import PRINCIPAL_ID_LENGTH_MAX, Principal

STORE_ERROR = "STORE_ERROR"  # the query service's code for a read its store failed (sinks/routes.py)
_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)
_CURSOR = re.compile(r"[A-Za-z0-9._~-]+", re.ASCII)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_DATE_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
ACCOUNT_MONEY_FIELDS = ("balance", "held", "available", "pending_in", "pending_out", "lower_limit", "upper_limit")
SUM_MONEY_FIELDS = ("balance", "held", "available", "pending_in", "pending_out")
DAY_MONEY_FIELDS = ("credits", "debits", "turnover", "net", "closing_balance")
TOTAL_MONEY_FIELDS = (
    *SUM_MONEY_FIELDS,
    "deposits",
    "withdrawals",
    "external_net",
    "credits_in_flight",
    "batches_in_flight",
    "drift",
)

# -- query parameters ----------------------------------------------------------------------------

Parse = Callable[[str, str], str]  # (name, text) -> the value to forward


def _bad(name: str, message: str) -> ApiError:
    return ApiError(GatewayCode.BAD_PARAMETER, f"{name} {message}", details={"parameter": name})


def natural(name: str, text: str) -> str:
    """An integer 0..2^63-1 written in ASCII digits only."""
    if _DIGITS.fullmatch(text) is None or int(text) > INTEGER_MAX:
        raise _bad(name, f"must be an integer in 0..{INTEGER_MAX}")
    return str(int(text))


def page_size(name: str, text: str) -> str:
    return _page_size(name, text, HISTORY_PAGE_EVENTS_MAX)


def account_page_size(name: str, text: str) -> str:
    return _page_size(name, text, ACCOUNT_PAGE_ACCOUNTS_MAX)


def _page_size(name: str, text: str, limit_max: int) -> str:
    if _DIGITS.fullmatch(text) is None or int(text) < 1:
        raise _bad(name, f"must be an integer in 1..{limit_max}")
    if int(text) > limit_max:
        raise ApiError(
            GatewayCode.PAGE_TOO_LARGE,
            f"{name} is at most {limit_max}",
            details={"parameter": name, "limit_max": limit_max},
        )
    return str(int(text))


def cursor(name: str, text: str) -> str:
    """An opaque listing cursor: forwarded as it came, if it could be one (the query service
    decides whether it made it)."""
    if _CURSOR.fullmatch(text) is None:
        raise ApiError(
            GatewayCode.BAD_CURSOR, f"{name} is not a next_cursor this API gave", details={"parameter": name}
        )
    return text


def principal_id(name: str, text: str) -> str:
    if not is_identifier(text, PRINCIPAL_ID_LENGTH_MAX):
        raise _bad(name, f"must be a principal id: 1..{PRINCIPAL_ID_LENGTH_MAX} printable ASCII characters, no space")
    return text


def moment(name: str, text: str) -> str:
    """Milliseconds since the epoch, or an RFC 3339 date-time; forwarded as milliseconds,
    clamped to what the views can hold (no event is older than 1970 or newer than 2262,
    so the answer is the same)."""
    milliseconds = int(text) if _DIGITS.fullmatch(text) is not None else _date_time_ms(name, text)
    return str(min(max(milliseconds, 0), AT_MS_MAX))


def _date_time_ms(name: str, text: str) -> int:
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise _bad(name, "must be milliseconds since the epoch or an RFC 3339 date-time (2026-01-31T12:00:00Z)")
    day_text, hours, minutes, seconds, fraction, offset = match.groups()
    leap = seconds == "60"  # a leap second: the moment after :59
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        parsed = datetime.datetime.fromisoformat(f"{day_text}T{hours}:{minutes}:{'59' if leap else seconds}{offset}")
        epoch_ms = (parsed - EPOCH) // datetime.timedelta(milliseconds=1)
    except ValueError:
        raise _bad(name, "is not a date-time that exists") from None
    except OverflowError:  # beyond year 1 or 9999 once its offset is applied
        epoch_ms = -1 if day_text < "1970" else AT_MS_MAX
    return epoch_ms + (1000 if leap else 0) + int((fraction or "0")[:3].ljust(3, "0"))


def day(name: str, text: str) -> str:
    """A day YYYY-MM-DD, clamped to the days the views can hold (the answer is the same)."""
    try:
        parsed = datetime.date.fromisoformat(text) if _DAY.fullmatch(text) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise _bad(name, "must be a day YYYY-MM-DD")
    return min(max(parsed, DAY_MIN), DAY_MAX).isoformat()


def raw_cut(name: str, text: str) -> str:
    if text != "none":
        raise _bad(name, 'is "none" (the raw view) or absent (at the consistent cut)')
    return text


# -- routes --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ReadRoute:
    """One documented read: the gateway's path, the query service's path after
    /accounts/{id} (or the whole path for reads of no account), its parameters, a pair
    of parameters of which at most one may be given, and what to forward if neither is."""

    path: str
    upstream: str
    parameters: Mapping[str, Parse]
    summary: str
    exclusive: tuple[str, str] | None = None
    default: tuple[str, str] | None = None
    rollup: bool = False
    listing: bool = False  # the listing of every account (its own authorization)

    @property
    def per_account(self) -> bool:
        return "{account_id}" in self.path


MIN_SEQ: dict[str, Parse] = {"min_seq": natural}
READ_ROUTES: tuple[ReadRoute, ...] = (
    ReadRoute("/v1/accounts/{account_id}", "", MIN_SEQ, "The account: balance, available, held, limits, status"),
    ReadRoute(
        "/v1/accounts/{account_id}/history",
        "/history",
        {**MIN_SEQ, "limit": page_size, "before": natural, "after": natural},
        "A page of the account's events with the running balance",
        exclusive=("before", "after"),
    ),
    ReadRoute(
        "/v1/accounts/{account_id}/as-of",
        "/as-of",
        {**MIN_SEQ, "sequence": natural, "at": moment},
        "The account right after an event, or as of a time (neither: its newest state)",
        exclusive=("sequence", "at"),
        default=("sequence", str(INTEGER_MAX)),
    ),
    ReadRoute(
        "/v1/accounts/{account_id}/turnover",
        "/turnover",
        {**MIN_SEQ, "from": day, "to": day},
        "Per UTC day: credits, debits, turnover, net and closing balance",
    ),
    ReadRoute(
        "/v1/accounts/{account_id}/rollup",
        "/rollup",
        MIN_SEQ,
        "The account with its descendants summed in, per currency",
        rollup=True,
    ),
    ReadRoute("/v1/totals", "/totals", {"cut": raw_cut}, "Per-currency totals and conservation at a consistent cut"),
    ReadRoute(
        "/v1/accounts",
        "/accounts",
        {"limit": account_page_size, "cursor": cursor, "owner": principal_id},
        "Accounts in the order of their ids, a page at a time (pass next_cursor back as cursor)",
        listing=True,
    ),
)
# Longer than QUERY_PARAMETER_LENGTH_MAX, the bound of every other parameter.
PARAMETER_LENGTH_MAX = {"cursor": ACCOUNT_CURSOR_LENGTH_MAX, "owner": PRINCIPAL_ID_LENGTH_MAX}
ACCOUNT_ROUTE = READ_ROUTES[0]
# The query service's account answer names the account's owner here (a principal id), once
# the events carry it; an account without it is readable by OPERATOR, AUDITOR and ADMIN only.
OWNER_FIELD = "owner"
AUTHORIZATION = "Authorization"
Credential = list[str]  # the caller's Authorization headers (one, verified), forwarded to the query service


def checked_parameters(route: ReadRoute, query: MultiMapping[str]) -> dict[str, str]:
    """The query parameters of a read, each once, each valid; normalized for forwarding."""
    values: dict[str, str] = {}
    for name in query:
        if name not in route.parameters:
            raise ApiError(
                GatewayCode.UNKNOWN_PARAMETER,
                f"unknown query parameter {name!r}",
                details={"parameter": name, "allowed": sorted(route.parameters)},
            )
        given = query.getall(name)
        if len(given) != 1:
            raise _bad(name, "is given more than once")
        length_max = PARAMETER_LENGTH_MAX.get(name, QUERY_PARAMETER_LENGTH_MAX)
        if len(given[0]) > length_max:
            raise _bad(name, f"is longer than {length_max} characters")
        values[name] = route.parameters[name](name, given[0])
    if route.exclusive is not None:
        first, second = route.exclusive
        if first in values and second in values:
            raise ApiError(
                GatewayCode.CONFLICTING_PARAMETERS,
                f"{first} and {second} cannot both be given",
                details={"parameters": [first, second]},
            )
        if first not in values and second not in values and route.default is not None:
            name, value = route.default
            values[name] = value
    return values


def path_segment(account_id: str) -> str:
    """One path segment that decodes to exactly `account_id` (dots quoted too, so `..`
    can never be read as a step up)."""
    return urllib.parse.quote(account_id, safe="").replace(".", "%2E")


def upstream_url(query_url: str, route: ReadRoute, account_id: str | None, parameters: Mapping[str, str]) -> URL:
    path = route.upstream if account_id is None else f"/accounts/{path_segment(account_id)}{route.upstream}"
    query = urllib.parse.urlencode(parameters, quote_via=urllib.parse.quote)
    return URL(query_url.rstrip("/") + path + (f"?{query}" if query else ""), encoded=True)


# -- forwarding ----------------------------------------------------------------------------------


class InFlight:
    """A count of work under way with a bound; the event loop is its only thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def enter(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1


@dataclasses.dataclass
class Reader:
    query_url: str
    session: aiohttp.ClientSession
    reads: InFlight = dataclasses.field(default_factory=lambda: InFlight(READS_IN_FLIGHT_MAX))
    rollups: InFlight = dataclasses.field(default_factory=lambda: InFlight(ROLLUPS_IN_FLIGHT_MAX))

    async def read(
        self,
        route: ReadRoute,
        account_id: str | None,
        query: MultiMapping[str],
        *,
        principal: Principal,
        credential: Credential,
    ) -> dict[str, Any]:
        """A read for a principal the handler has let read accounts (or totals): one that
        may not read every account gets only its own (the view's `owner`). The caller's own
        credential goes with it: the query service verifies it and applies the same rules."""
        parameters = checked_parameters(route, query)
        if account_id is not None and not is_identifier(account_id, ACCOUNT_ID_LENGTH_MAX):
            raise _account_not_found(account_id, "no account can have this id")
        if route.listing:
            owner = authorization.listing_owner(principal, parameters.get(OWNER_FIELD))
            parameters.pop(OWNER_FIELD, None)
            if owner is not None:
                parameters[OWNER_FIELD] = owner
        if account_id is not None and not authorization.reads_every_account(principal):
            account = await self.owned_account(account_id, parameters, principal, credential)
            if route is ACCOUNT_ROUTE:
                return account
        return await self.forward(route, account_id, parameters, credential)

    async def owned_account(
        self, account_id: str, parameters: dict[str, str], principal: Principal, credential: Credential
    ) -> dict[str, Any]:
        """The account (after min_seq, if asked) if the view says this principal owns it;
        else 403, also when it does not exist: an owner learns nothing of other accounts."""
        waiting = {name: value for name, value in parameters.items() if name in MIN_SEQ}
        try:
            body = await self.forward(ACCOUNT_ROUTE, account_id, waiting, credential)
        except ApiError as error:
            if error.code is not ErrorCode.ACCOUNT_NOT_FOUND:
                raise
            body = {}
        account = body.get("account")
        owner = account.get(OWNER_FIELD) if isinstance(account, dict) else None
        authorization.check_owner(principal, account_id, owner if isinstance(owner, str) else None)
        return body

    async def forward(
        self, route: ReadRoute, account_id: str | None, parameters: Mapping[str, str], credential: Credential
    ) -> dict[str, Any]:
        bounds = [self.reads, self.rollups] if route.rollup else [self.reads]
        entered = []
        try:
            for bound in bounds:
                if not bound.enter():
                    raise ApiError(GatewayCode.READS_BUSY, f"{bound.limit} such reads already run; ask again")
                entered.append(bound)
            status, body = await self.fetch(upstream_url(self.query_url, route, account_id, parameters), credential)
        finally:
            for bound in entered:
                bound.leave()
        if status != 200:
            raise _upstream_error(status, body, account_id)
        return with_decimals(body)

    async def fetch(self, url: URL, credential: Credential) -> tuple[int, Any]:
        headers = {AUTHORIZATION: credential[0]} if len(credential) == 1 else {}
        try:
            async with self.session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT_S)
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ApiError(
                GatewayCode.QUERY_UNAVAILABLE, f"the query service cannot be reached: {type(error).__name__}"
            ) from None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(
                GatewayCode.QUERY_FAILED, "the query service answered without a JSON object", details={"status": status}
            )
        return status, body

    async def currency(self, account_id: str, credential: Credential) -> str | None:
        """The account's currency as the view has it (it never changes), or None (also when
        the caller may not read the account)."""
        if not is_identifier(account_id, ACCOUNT_ID_LENGTH_MAX):
            return None
        # A query service that failed the read, or could not be reached, raises: the caller
        # asks again rather than get an outcome silently without its decimals
        # (test_store_errors.py, "currency lookup").
        status, body = await self.fetch(upstream_url(self.query_url, ACCOUNT_ROUTE, account_id, {}), credential)
        if status in (403, 404):  # not in the view, or not the caller's: no decimals, no error
            return None
        if status != 200:
            raise _upstream_error(status, body, account_id)
        account = body.get("account")
        currency = account.get("currency") if isinstance(account, dict) else None
        return currency if isinstance(currency, str) else None

    async def currencies(self, account_ids: list[str], credential: Credential) -> dict[str, str]:
        found = await asyncio.gather(*(self.currency(account_id, credential) for account_id in account_ids))
        return {account_id: currency for account_id, currency in zip(account_ids, found, strict=True) if currency}


def _account_not_found(account_id: str, message: str) -> ApiError:
    return ApiError(ErrorCode.ACCOUNT_NOT_FOUND, message, details={"account_id": account_id})


def _upstream_error(status: int, body: dict[str, Any], account_id: str | None) -> ApiError:
    message = str(body.get("error") or body.get("message") or f"the query service answered {status}")
    if status == 404 and account_id is not None:
        return _account_not_found(account_id, message)
    if status == 409 and body.get("status") == "not_yet":
        return ApiError(
            GatewayCode.NOT_YET,
            message,
            details={"min_seq": body.get("min_seq"), "view_sequence": body.get("view_sequence")},
        )
    if status == 400:
        return ApiError(
            GatewayCode.BAD_CURSOR if body.get("code") == "BAD_CURSOR" else GatewayCode.BAD_PARAMETER, message
        )
    if status == 403:
        return ApiError(GatewayCode.FORBIDDEN, message)
    if status == 503 and body.get("code") == STORE_ERROR:
        return ApiError(GatewayCode.QUERY_UNAVAILABLE, message)
    if status in (429, 503):
        return ApiError(GatewayCode.READS_BUSY, message)
    return ApiError(GatewayCode.QUERY_FAILED, message, details={"status": status})


# -- decimals ------------------------------------------------------------------------------------


def decimals(row: Mapping[str, Any], fields: tuple[str, ...], currency: Any) -> dict[str, str]:
    """The money fields of a row as decimal strings of the currency."""
    if not isinstance(currency, str) or currency not in CURRENCY_EXPONENTS:
        return {}
    return {name: format_amount(row[name], currency) for name in fields if type(row.get(name)) is int}


def _render(row: Any, fields: tuple[str, ...], currency: Any) -> None:
    if isinstance(row, dict):
        rendered = decimals(row, fields, currency)
        if rendered:
            row["decimal"] = rendered


def with_decimals(body: dict[str, Any]) -> dict[str, Any]:
    """Add `decimal` (the money fields as decimal strings) beside every row that carries
    or implies its currency: accounts, roll-up sums, turnover days, totals."""
    account = body.get("account")
    if isinstance(account, dict):
        _render(account, ACCOUNT_MONEY_FIELDS, account.get("currency"))
    for row in _rows(body, "accounts"):
        _render(row, ACCOUNT_MONEY_FIELDS, row.get("currency") if isinstance(row, dict) else None)
    for row in _rows(body, "by_currency") + _rows(body, "currencies"):
        _render(row, TOTAL_MONEY_FIELDS, row.get("currency"))
    for row in _rows(body, "days"):
        _render(row, DAY_MONEY_FIELDS, body.get("currency"))
    return body


def _rows(body: dict[str, Any], name: str) -> list[Any]:
    rows = body.get(name)
    return rows if isinstance(rows, list) else []
