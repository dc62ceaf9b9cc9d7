"""The OpenAPI document against the code it describes: every command type and field in
it, every code with a status, the read bounds equal to the query service's, bodies the
document calls valid accepted by translate.py, and the reads' parameter checks."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies
from multidict import MultiDict
from schemathesis.core.result import Ok

from gateway.errors import GATEWAY_STATUSES, LEDGER_STATUSES, ApiError, GatewayCode
from gateway.limits import (
    ACCOUNT_CURSOR_LENGTH_MAX,
    ACCOUNT_PAGE_ACCOUNTS_DEFAULT,
    ACCOUNT_PAGE_ACCOUNTS_MAX,
    AT_MS_MAX,
    HISTORY_PAGE_EVENTS_DEFAULT,
    HISTORY_PAGE_EVENTS_MAX,
)
from gateway.openapi import SCHEMA_PREFIX, document
from gateway.principals import client_fields
from gateway.reads import (
    READ_ROUTES,
    ReadRoute,
    checked_parameters,
    cursor,
    day,
    moment,
    path_segment,
    upstream_url,
    with_decimals,
)
from gateway.translate import MINOR_SUFFIX, MONEY_FIELDS, parse_json, to_command
from ledger import commands
from ledger.errors import ErrorCode
from ledger.limits import ACCOUNT_ID_LENGTH_MAX
from ledger.principals import Principal, Role
from sinks import views
from sinks.account_cursor import CURSOR_LENGTH_MAX, encode_cursor

ROUTES = {route.path: route for route in READ_ROUTES}
EVERY_ROLE = Principal(principal_id="contract", roles=frozenset(Role))


def test_every_code_has_a_status_and_the_document_lists_it() -> None:
    assert set(LEDGER_STATUSES) == set(ErrorCode)
    assert set(GATEWAY_STATUSES) == set(GatewayCode)
    codes = document()["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
    assert set(codes) == {code.value for code in ErrorCode} | {code.value for code in GatewayCode}


def test_every_command_type_and_field_is_in_the_document() -> None:
    spec = document()
    schemas = spec["components"]["schemas"]
    body = spec["paths"]["/v1/commands"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert [ref["$ref"] for ref in body["oneOf"]] == [SCHEMA_PREFIX + cls.__name__ for cls in commands.COMMAND_TYPES]
    for cls in commands.COMMAND_TYPES:
        properties = schemas[cls.__name__]["properties"]
        for field in client_fields(cls):
            names = {field.name, field.name + MINOR_SUFFIX} if field.name in MONEY_FIELDS else {field.name}
            assert names <= set(properties), (cls.__name__, field.name)


def test_the_document_is_valid_openapi_3_1_and_names_every_route() -> None:
    schema = schemathesis.openapi.from_dict(document())
    schema.validate()
    operations = list(schema.get_all_operations())
    assert all(isinstance(operation, Ok) for operation in operations), operations
    labels = {operation.ok().label for operation in operations if isinstance(operation, Ok)}
    assert labels == {
        "POST /v1/commands",
        "POST /v1/commands/bulk",
        "GET /v1/commands/{command_id}",
        *(f"GET {route.path}" for route in READ_ROUTES),
        "GET /v1/openapi.json",
        "GET /v1/status",
        "GET /health",
        "GET /ready",
    }


PUBLIC_OPERATIONS = {"/health", "/ready", "/v1/openapi.json"}


def test_every_operation_but_health_readiness_and_the_document_needs_a_credential() -> None:
    spec = document()
    assert spec["security"] == [{"bearer": []}]
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    unauthorized = spec["components"]["responses"]["Error401"]
    assert unauthorized["headers"]["WWW-Authenticate"]["required"] is True
    assert spec["components"]["responses"]["Error429"]["headers"]["Retry-After"]["required"] is True
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path in PUBLIC_OPERATIONS:
                assert operation["security"] == [] and not {"401", "403"} & set(operation["responses"]), path
            else:
                assert "security" not in operation, (method, path)  # the document's: a credential
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


def test_the_history_bounds_are_the_query_services() -> None:
    assert (HISTORY_PAGE_EVENTS_MAX, HISTORY_PAGE_EVENTS_DEFAULT) == (
        views.HISTORY_PAGE_EVENTS_MAX,
        views.HISTORY_PAGE_EVENTS_DEFAULT,
    )


def test_the_account_listing_bounds_are_the_query_services() -> None:
    assert (ACCOUNT_PAGE_ACCOUNTS_MAX, ACCOUNT_PAGE_ACCOUNTS_DEFAULT) == (
        views.ACCOUNT_PAGE_ACCOUNTS_MAX,
        views.ACCOUNT_PAGE_ACCOUNTS_DEFAULT,
    )
    assert CURSOR_LENGTH_MAX <= ACCOUNT_CURSOR_LENGTH_MAX, "every cursor the query service makes passes the gateway"
    assert encode_cursor("~" * ACCOUNT_ID_LENGTH_MAX) == cursor("cursor", encode_cursor("~" * ACCOUNT_ID_LENGTH_MAX))
    listing = document()["paths"]["/v1/accounts"]["get"]
    assert {parameter["name"] for parameter in listing["parameters"]} == {"limit", "cursor", "owner"}
    assert listing["operationId"] == "readAccounts" and "400" in listing["responses"]


SUBMIT = schemathesis.openapi.from_dict(document())["/v1/commands"]["POST"]


@hypothesis.settings(max_examples=200, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(case=SUBMIT.as_strategy())
def test_a_body_the_document_calls_valid_becomes_a_command(case: Any) -> None:
    """No drift between the document and translate.py: a body the schema allows is a
    command, or refused with a 422 for a rule a schema cannot say (the currency's decimal
    places, a dedup id in the header or the body and equal); never a 400."""
    key = (case.headers or {}).get("Idempotency-Key")
    try:
        command = to_command(parse_json(json.dumps(case.body).encode()), principal=EVERY_ROLE, idempotency_key=key)
    except ApiError as error:
        assert error.status == 422, error.body()
        return
    assert type(command).__name__ == case.body["type"]


# (route, query, code or None for accepted)
PARAMETERS: list[tuple[str, dict[str, Any] | list[tuple[str, str]], str | None]] = [
    ("/v1/accounts/{account_id}", {"min_seq": "7"}, None),
    ("/v1/accounts/{account_id}", {"min_seq": "-1"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}", {"min_seq": " 7"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}", {"min_seq": "1_000"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}", {"min_seq": "٣"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}", {"min_seq": str(2**63)}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}", {"min_seq": "9" * 100}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}", [("min_seq", "1"), ("min_seq", "2")], "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}", {"admin": "1"}, "UNKNOWN_PARAMETER"),
    ("/v1/accounts/{account_id}/history", {"limit": "1000", "before": "5"}, None),
    ("/v1/accounts/{account_id}/history", {"limit": "1001"}, "PAGE_TOO_LARGE"),
    ("/v1/accounts/{account_id}/history", {"limit": "0"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}/history", {"limit": "ten"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}/history", {"before": "1", "after": "2"}, "CONFLICTING_PARAMETERS"),
    ("/v1/accounts/{account_id}/as-of", {"sequence": "3"}, None),
    ("/v1/accounts/{account_id}/as-of", {"at": "2026-01-01T00:00:00Z"}, None),
    ("/v1/accounts/{account_id}/as-of", {"at": "1700000000000"}, None),
    ("/v1/accounts/{account_id}/as-of", {}, None),
    ("/v1/accounts/{account_id}/as-of", {"sequence": "1", "at": "1"}, "CONFLICTING_PARAMETERS"),
    ("/v1/accounts/{account_id}/as-of", {"at": "yesterday"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}/as-of", {"at": "2026-01-01T00:00:00"}, "BAD_PARAMETER"),  # no offset
    ("/v1/accounts/{account_id}/as-of", {"at": "2026-02-30T00:00:00Z"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}/as-of", {"at": "1900-01-01"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}/as-of", {"at": str(10**20)}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}/turnover", {"from": "2026-01-01", "to": "2026-02-01"}, None),
    ("/v1/accounts/{account_id}/turnover", {"from": "20260101"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}/turnover", {"from": "2026-02-30"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}/turnover", {"to": "2026-1-01"}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}/rollup", {"min_seq": "x" * 100}, "BAD_PARAMETER"),
    ("/v1/totals", {"cut": "none"}, None),
    ("/v1/totals", {"cut": "all"}, "BAD_PARAMETER"),
    ("/v1/totals", {"cut": ""}, "BAD_PARAMETER"),
    ("/v1/accounts/{account_id}/history", {"limit": ""}, "BAD_PARAMETER"),
]


@pytest.mark.parametrize(("path", "query", "code"), PARAMETERS)
def test_read_parameters_are_checked_before_they_are_forwarded(path: str, query: Any, code: str | None) -> None:
    route: ReadRoute = ROUTES[path]
    given: MultiDict[str] = MultiDict(query)
    if code is None:
        checked_parameters(route, given)
        return
    with pytest.raises(ApiError) as caught:
        checked_parameters(route, given)
    assert caught.value.code.value == code and caught.value.status == (422 if code == "CONFLICTING_PARAMETERS" else 400)


@hypothesis.given(strategies.text(min_size=1, max_size=64))
def test_an_account_id_is_forwarded_as_exactly_one_segment(account_id: str) -> None:
    segment = path_segment(account_id)
    assert urllib.parse.unquote(segment) == account_id
    assert not set(segment) & set("/?#.%") - {"%"} and "." not in segment
    url = upstream_url("http://query:1", ROUTES["/v1/accounts/{account_id}/history"], account_id, {"limit": "5"})
    assert url.raw_path == f"/accounts/{segment}/history" and url.query_string == "limit=5"


@pytest.mark.parametrize(
    ("text", "milliseconds"),
    [
        ("1700000000123", 1700000000123),
        ("2026-01-31T12:00:00Z", 1769860800000),
        ("2026-01-31t12:00:00.98765z", 1769860800987),
        ("2026-01-31T13:30:00+01:30", 1769860800000),
        ("2016-12-31T23:59:60Z", 1483228800000),  # a leap second
        ("0001-01-01T00:00:00+23:59", 0),  # before 1970: clamped (no event is older)
        ("9999-12-31T23:59:59-23:59", None),  # past 2262: clamped (no event is newer)
        (str(2**63 - 1), None),
    ],
)
def test_times_are_exact_milliseconds_clamped_to_what_the_views_hold(text: str, milliseconds: int | None) -> None:
    assert moment("at", text) == str(AT_MS_MAX if milliseconds is None else milliseconds)


def test_days_are_clamped_to_what_the_views_hold() -> None:
    assert (day("from", "0107-09-30"), day("to", "9999-01-01"), day("to", "2026-03-01")) == (
        "1970-01-01",
        "2149-06-06",
        "2026-03-01",
    )


def test_reads_gain_decimals_in_the_accounts_currency() -> None:
    answer = with_decimals(
        {
            "account": {"currency": "JPY", "balance": 1500, "held": 0, "available": 1500, "lower_limit": -5},
            "currency": "KWD",
            "days": [{"credits": 1234, "debits": 0, "turnover": 1234, "net": 1234, "closing_balance": 1}],
            "by_currency": [{"currency": "USD", "balance": -5}],
        }
    )
    assert answer["account"]["decimal"] == {"balance": "1500", "held": "0", "available": "1500", "lower_limit": "-5"}
    assert answer["days"][0]["decimal"]["closing_balance"] == "0.001"
    assert answer["by_currency"][0]["decimal"] == {"balance": "-0.05"}
