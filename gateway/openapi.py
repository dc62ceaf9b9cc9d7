"""The OpenAPI 3.1 document of the HTTP API, served at GET /v1/openapi.json.

Built from the code it describes, so it cannot drift: one request schema per command
dataclass of `ledger.commands.COMMAND_TYPES` (fields, types, which are required, money as a
decimal string or `_minor` integer), the descriptions from the commands' Avro schemas,
the bounds from `ledger/limits.py` and `gateway/limits.py`, the reads from
`gateway.reads.READ_ROUTES`, and every error code from `gateway/errors.py`.
"""

from __future__ import annotations

import functools
import json
import typing
from typing import Any

from gateway.errors import GATEWAY_STATUSES, LEDGER_STATUSES, GatewayCode
from gateway.limits import (
    ACCOUNT_CURSOR_LENGTH_MAX,
    ACCOUNT_PAGE_ACCOUNTS_DEFAULT,
    ACCOUNT_PAGE_ACCOUNTS_MAX,
    BULK_COMMANDS_MAX,
    HISTORY_PAGE_EVENTS_DEFAULT,
    HISTORY_PAGE_EVENTS_MAX,
    INTEGER_MAX,
    INTEGER_MIN,
    LEGS_MAX,
    METADATA_ENTRIES_PER_COMMAND_MAX,
)
from gateway.principals import client_fields
from gateway.reads import READ_ROUTES, ReadRoute
from gateway.translate import MINOR_SUFFIX, MONEY_FIELDS, is_required
from ledger import commands
from ledger.currencies import CURRENCY_EXPONENTS
from ledger.errors import ErrorCode
from ledger.limits import (
    ACCOUNT_ID_LENGTH_MAX,
    AMOUNT_MAX,
    BATCH_LEGS_MIN,
    COMMAND_ID_LENGTH_MAX,
    DEDUP_ID_LENGTH_MAX,
    HOLD_TTL_MS_MAX,
    HOLD_TTL_MS_MIN,
    METADATA_KEY_LENGTH_MAX,
    METADATA_VALUE_LENGTH_MAX,
    REASON_LENGTH_MAX,
    REFERENCE_ID_LENGTH_MAX,
)
from ledger.principals import PRINCIPAL_ID_LENGTH_MAX
from schemas import AVRO_ROOT

API_VERSION = "1"
SCHEMA_PREFIX = "#/components/schemas/"
IDENTIFIER_PATTERN = "^[!-{}~]+$"  # printable ASCII without space and '|' (ledger.commands.is_identifier)
POSITIVE_DECIMAL_PATTERN = r"^[0-9]{1,19}(\.[0-9]{1,19})?$"
SIGNED_DECIMAL_PATTERN = r"^-?[0-9]{1,19}(\.[0-9]{1,19})?$"
# The length bound of every identifier field of a command.
ID_LENGTHS_MAX: dict[str, int] = {
    "command_id": COMMAND_ID_LENGTH_MAX,
    "target_command_id": COMMAND_ID_LENGTH_MAX,
    "transfer_id": COMMAND_ID_LENGTH_MAX,
    "dedup_id": DEDUP_ID_LENGTH_MAX,
    "account_id": ACCOUNT_ID_LENGTH_MAX,
    "from_account_id": ACCOUNT_ID_LENGTH_MAX,
    "to_account_id": ACCOUNT_ID_LENGTH_MAX,
    "parent_account_id": ACCOUNT_ID_LENGTH_MAX,
    "hold_id": REFERENCE_ID_LENGTH_MAX,
    "batch_id": REFERENCE_ID_LENGTH_MAX,
}
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "ttl_ms": (HOLD_TTL_MS_MIN, HOLD_TTL_MS_MAX),
    # SetVelocityRules: minor units of the account's currency, or payments; 0: no limit.
    **{name: (0, AMOUNT_MAX) for name in ("hour_amount_max", "hour_count_max", "day_amount_max", "day_count_max")},
}
MINOR_RANGES: dict[str, tuple[int, int]] = {
    "amount": (1, AMOUNT_MAX),
    "lower_limit": (-AMOUNT_MAX, 0),
    "upper_limit": (0, AMOUNT_MAX),
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_PREFIX + name}


def _identifier(name: str, description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "string",
        "minLength": 1,
        "maxLength": ID_LENGTHS_MAX[name],
        "pattern": IDENTIFIER_PATTERN,
    }
    if description:
        schema["description"] = description
    return schema


# -- commands ------------------------------------------------------------------------------------


@functools.cache
def avro_docs(record: str, folder: str = "command") -> dict[str, str]:
    """The `doc` of each field of an Avro record of schemas/avro/<folder>/, and "" for the record's."""
    schema = json.loads((AVRO_ROOT / folder / f"{record}.avsc").read_text())
    docs = {field["name"]: field.get("doc", "") for field in schema["fields"]}
    docs[""] = schema.get("doc", "")
    return docs


def _money_properties(name: str, doc: str, *, signed: bool) -> dict[str, Any]:
    low, high = (-AMOUNT_MAX, AMOUNT_MAX) if signed else MINOR_RANGES[name]
    return {
        name: {
            "type": "string",
            "pattern": SIGNED_DECIMAL_PATTERN if signed or low < 0 else POSITIVE_DECIMAL_PATTERN,
            "description": f'{doc} As an exact decimal string of the currency ("12.34" USD); never rounded.',
        },
        name + MINOR_SUFFIX: {
            "type": "integer",
            "minimum": low,
            "maximum": high,
            "description": f"{doc} As an integer of minor units (instead of {name}).",
        },
    }


def _field_schema(cls: type, name: str, hint: Any, doc: str) -> dict[str, Any]:
    if name in ID_LENGTHS_MAX:
        schema = _identifier(name, doc)
        if type(None) in typing.get_args(hint):
            return {"anyOf": [schema, {"type": "null"}], "description": doc}
        return schema
    if name == "currency":
        return {"type": "string", "enum": sorted(CURRENCY_EXPONENTS), "description": doc}
    if name == "metadata":
        return _ref("Metadata") | {"description": doc}
    if name == "legs":
        return {
            "type": "array",
            "items": _ref("BatchLeg"),
            "minItems": BATCH_LEGS_MIN,
            "maxItems": LEGS_MAX,
            "description": doc,
        }
    if hint is int:
        low, high = INTEGER_RANGES.get(name, (INTEGER_MIN, INTEGER_MAX))
        return {"type": "integer", "minimum": low, "maximum": high, "description": doc}
    if hint is bool:
        return {"type": "boolean", "description": doc}
    if hint is str and name == "reason":
        return {"type": "string", "maxLength": REASON_LENGTH_MAX, "description": doc}
    if hint is str and name == "owner":
        return {"type": "string", "maxLength": PRINCIPAL_ID_LENGTH_MAX, "description": doc}
    raise TypeError(f"{cls.__name__}.{name}: no schema for {hint!r}; teach gateway/openapi.py this field")


def command_schema(cls: type[commands.Command]) -> dict[str, Any]:
    """The request body of one command type, from its dataclass."""
    name = cls.__name__
    docs = avro_docs(name)
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {"type": {"const": name, "description": "The command type."}}
    required = ["type"]
    constraints: list[dict[str, Any]] = []
    decimals: list[str] = []
    for field in client_fields(cls):
        doc = docs.get(field.name, "")
        if field.name in MONEY_FIELDS:
            properties.update(_money_properties(field.name, doc, signed=False))
            decimals.append(field.name)
            both = [field.name, field.name + MINOR_SUFFIX]
            if is_required(field):
                constraints.append({"oneOf": [{"required": [both[0]]}, {"required": [both[1]]}]})
            else:
                constraints.append({"not": {"required": both}})
            continue
        properties[field.name] = _field_schema(cls, field.name, hints[field.name], doc)
        if is_required(field) and field.name not in ("command_id", "dedup_id"):
            required.append(field.name)
    if "command_id" in properties:
        properties["command_id"]["description"] += " Optional here: the gateway makes one (a UUID) if absent."
    if "dedup_id" in properties:
        properties["dedup_id"]["description"] += (
            " Required unless the Idempotency-Key header carries it (then it may be absent, or must be equal)."
        )
    schema: dict[str, Any] = {
        "type": "object",
        "title": name,
        "description": docs[""],
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if constraints:
        schema["allOf"] = constraints
    return schema


def _leg_schema() -> dict[str, Any]:
    docs = avro_docs("BatchLeg", "common")
    return {
        "type": "object",
        "properties": {
            "account_id": _identifier("account_id", docs.get("account_id", "")),
            **_money_properties("amount", docs.get("amount", ""), signed=True),
            "currency": {"type": "string", "enum": sorted(CURRENCY_EXPONENTS)},
        },
        "required": ["account_id", "currency"],
        "oneOf": [{"required": ["amount"]}, {"required": ["amount_minor"]}],
        "additionalProperties": False,
    }


def _metadata_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "maxProperties": METADATA_ENTRIES_PER_COMMAND_MAX,
        "propertyNames": {"minLength": 1, "maxLength": METADATA_KEY_LENGTH_MAX},
        "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_LENGTH_MAX},
        "description": f"At most {METADATA_ENTRIES_PER_COMMAND_MAX} entries (more: TOO_MANY_METADATA_ENTRIES); "
        "copied onto the events, for audit.",
    }


# -- answers -------------------------------------------------------------------------------------


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _result_schema() -> dict[str, Any]:
    string, integer = {"type": "string"}, {"type": "integer"}
    properties = {
        "command_id": string,
        "dedup_id": string,
        "command_type": string,
        "status": {"type": "string", "enum": ["ACCEPTED", "REJECTED"]},
        "code": _nullable({"type": "string", "enum": [code.value for code in ErrorCode]}),
        "message": string,
        "reference_id": _nullable(string),
        "positions": {"type": "array", "items": _ref("Position")},
        "replayed": {"type": "boolean", "description": "A duplicate answered with the original's result."},
        "original_command_id": string,
        "decided_at_ms": integer,
        "queried": _nullable(_ref("CommandResult")),
        "principal_id": {"type": "string", "description": 'Who sent the command ("": anonymous).'},
    }
    return {
        "type": "object",
        "description": "The one final answer of the ledger to a command.",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _position_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "An account as the command left it; read-your-writes: pass `sequence` as min_seq.",
        "properties": {
            "account_id": {"type": "string"},
            "sequence": {"type": "integer", "minimum": 1},
            "balance_minor": {"type": "integer"},
            "available_minor": {"type": "integer"},
            "currency": {"type": "string"},
            "balance": {"type": "string", "pattern": SIGNED_DECIMAL_PATTERN},
            "available": {"type": "string", "pattern": SIGNED_DECIMAL_PATTERN},
        },
        "required": ["account_id", "sequence", "balance_minor", "available_minor"],
        "dependentRequired": {"currency": ["balance", "available"]},
        "additionalProperties": False,
    }


def _pending_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The command is in Kafka (or under way across partitions); ask status_url for its outcome.",
        "properties": {
            "status": {"const": "PENDING"},
            "command_id": {"type": "string"},
            "status_url": {"type": "string"},
        },
        "required": ["status", "command_id", "status_url"],
        "additionalProperties": False,
    }


def _error_schema() -> dict[str, Any]:
    codes = [code.value for code in GatewayCode] + [code.value for code in ErrorCode]
    return {
        "type": "object",
        "description": "Every answer that is not a success. `code` is stable: a ledger rejection keeps the "
        "ledger's code; the gateway's own are listed in the README.",
        "properties": {
            "code": {"type": "string", "enum": codes},
            "message": {"type": "string"},
            "details": {
                "type": "object",
                "description": "What the code is about: the field or parameter, the bound, or (for a command the "
                "ledger refused) the whole `result`.",
            },
        },
        "required": ["code", "message", "details"],
        "additionalProperties": False,
    }


def _money_row(required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            **{name: {"type": "integer"} for name in required if name != "currency"},
            "decimal": {
                "type": "object",
                "additionalProperties": {"type": "string", "pattern": SIGNED_DECIMAL_PATTERN},
                "description": "The money fields as decimal strings of the currency.",
            },
        },
        "required": required,
    }


def _account_schema() -> dict[str, Any]:
    schema = _money_row(["balance", "held", "available", "pending_in", "pending_out", "lower_limit", "upper_limit"])
    schema["required"] += ["account_id", "sequence", "currency", "status"]
    schema["properties"].update(
        {
            "account_id": {"type": "string"},
            "sequence": {"type": "integer"},
            "currency": {"type": "string"},
            "status": {"type": "string", "enum": ["ACTIVE", "LOCKED", "CLOSED"]},
            "parent_account_id": _nullable({"type": "string"}),
            "owner": _nullable(
                {"type": "string", "description": "The principal id of the account's holder, where the view knows it."}
            ),
        }
    )
    schema["description"] = "An account as the view holds it; money in integer minor units (and `decimal`)."
    return schema


def _read_answers() -> dict[str, dict[str, Any]]:
    ok = {"status": {"const": "ok"}}
    event = {
        "type": "object",
        "properties": {"sequence": {"type": "integer"}, "kind": {"type": "string"}, "balance": {"type": "integer"}},
        "required": ["sequence", "kind", "amount", "balance"],
    }
    day = _money_row(["credits", "debits", "turnover", "net", "closing_balance"])
    day["properties"]["day"] = {"type": "string", "format": "date"}
    day["required"].append("day")
    currency_sums = _money_row(["balance", "held", "available", "pending_in", "pending_out"])
    currency_sums["properties"]["currency"] = {"type": "string"}
    currency_sums["required"].append("currency")
    return {
        "/v1/accounts/{account_id}": {
            "properties": {**ok, "account": _ref("Account")},
            "required": ["status", "account"],
        },
        "/v1/accounts/{account_id}/history": {
            "properties": {
                **ok,
                "account_id": {"type": "string"},
                "order": {"type": "string", "enum": ["asc", "desc"]},
                "events": {"type": "array", "items": event, "maxItems": HISTORY_PAGE_EVENTS_MAX},
                "next_cursor": _nullable({"type": "integer"}),
            },
            "required": ["status", "account_id", "order", "events", "next_cursor"],
        },
        "/v1/accounts/{account_id}/as-of": {
            "properties": {**ok, "account": _ref("Account"), "as_of": {"type": "object"}},
            "required": ["status", "account", "as_of"],
        },
        "/v1/accounts/{account_id}/turnover": {
            "properties": {**ok, "currency": {"type": "string"}, "days": {"type": "array", "items": day}},
            "required": ["status", "account_id", "currency", "days"],
        },
        "/v1/accounts/{account_id}/rollup": {
            "properties": {
                **ok,
                "account": _ref("Account"),
                "descendants": {"type": "integer", "minimum": 0},
                "by_currency": {"type": "array", "items": currency_sums},
            },
            "required": ["status", "account", "descendants", "by_currency"],
        },
        "/v1/totals": {
            "properties": {
                **ok,
                "consistent": {"type": "boolean"},
                "currencies": {"type": "array", "items": currency_sums},
            },
            "required": ["status", "consistent", "currencies"],
        },
        "/v1/accounts": {
            "properties": {
                **ok,
                "accounts": {"type": "array", "items": _ref("Account"), "maxItems": ACCOUNT_PAGE_ACCOUNTS_MAX},
                "next_cursor": _nullable(
                    {
                        "type": "string",
                        "maxLength": ACCOUNT_CURSOR_LENGTH_MAX,
                        "description": "Opaque: pass it back as cursor for the next page; null on the last page.",
                    }
                ),
            },
            "required": ["status", "accounts", "next_cursor"],
        },
    }


# -- operations ----------------------------------------------------------------------------------


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


RETRY_AFTER = {"description": "Seconds to wait before asking again.", "schema": {"type": "string"}}
WWW_AUTHENTICATE = {"description": "The Bearer challenge (RFC 6750).", "schema": {"type": "string"}}
SECURITY_SCHEME = "bearer"


def _error_response(status: int, description: str, *, retry: bool = False) -> dict[str, Any]:
    ledger = sorted(code.value for code, code_status in LEDGER_STATUSES.items() if code_status == status)
    gateway = sorted(code.value for code, code_status in GATEWAY_STATUSES.items() if code_status == status)
    codes = ", ".join(f"`{code}`" for code in gateway + ledger)
    response: dict[str, Any] = {"description": f"{description} Codes: {codes}.", "content": _json(_ref("Error"))}
    if retry:
        response["headers"] = {"Retry-After": {**RETRY_AFTER, "required": True}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {**WWW_AUTHENTICATE, "required": True}}
    return response


ERROR_RESPONSES: dict[int, tuple[str, bool]] = {
    400: ("The request is not a well-formed command or read.", False),
    401: ("No credential, or one that does not verify (see WWW-Authenticate).", False),
    403: ("The principal's roles do not allow this, or the account is not its own.", False),
    404: ("Not found.", False),
    405: ("Method not allowed (see Allow).", False),
    409: ("Refused for the state of what it acts on (NOT_YET also carries Retry-After).", False),
    413: ("The body exceeds the bound.", False),
    415: ("The body is not application/json.", False),
    422: ("A well-formed command refused by a rule that needs no state.", False),
    429: ("Too much at once; try again after Retry-After.", True),
    502: ("The query service answered with an error of its own.", False),
    503: ("Not available now; try again after Retry-After.", True),
}


def _responses(statuses: list[int]) -> dict[str, Any]:
    """Error answers of a protected operation: these, and 401 (credential), 403 (roles) and
    429 (its principal's rate)."""
    every = sorted({*statuses, 401, 403, 429})
    return {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in every}


def _parameter(name: str, where: str, schema: dict[str, Any], description: str, *, required: bool = False) -> Any:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": description}


def _page_limit(items: str, limit_max: int, limit_default: int) -> tuple[dict[str, Any], str]:
    return (
        {"type": "integer", "minimum": 1, "maximum": limit_max},
        f"{items} per page, 1..{limit_max} (more: PAGE_TOO_LARGE); {limit_default} by default.",
    )


READ_PARAMETERS: dict[str, tuple[dict[str, Any], str]] = {
    "min_seq": (
        {"type": "integer", "minimum": 0, "maximum": INTEGER_MAX},
        "Read-your-writes: wait (boundedly) until the view holds this sequence of the account (a result's "
        "positions[].sequence); 409 NOT_YET with Retry-After if it does not in time.",
    ),
    "limit": _page_limit("Events", HISTORY_PAGE_EVENTS_MAX, HISTORY_PAGE_EVENTS_DEFAULT),
    "before": (
        {"type": "integer", "minimum": 0, "maximum": INTEGER_MAX},
        "Newest first, below this sequence (not with after: 422 CONFLICTING_PARAMETERS).",
    ),
    "after": (
        {"type": "integer", "minimum": 0, "maximum": INTEGER_MAX},
        "Oldest first, above this sequence (not with before).",
    ),
    "sequence": (
        {"type": "integer", "minimum": 0, "maximum": INTEGER_MAX},
        "Right after this event (not with at: 422 CONFLICTING_PARAMETERS; neither: the newest state).",
    ),
    "at": (
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": INTEGER_MAX},
                {"type": "string", "format": "date-time"},
            ]
        },
        "As of this time: milliseconds since the epoch or an RFC 3339 date-time (not with sequence).",
    ),
    "from": ({"type": "string", "format": "date"}, "First UTC day, YYYY-MM-DD."),
    "to": ({"type": "string", "format": "date"}, "Last UTC day, YYYY-MM-DD."),
    "cut": ({"type": "string", "enum": ["none"]}, "`none`: the raw view instead of the consistent cut."),
}


# Parameters one route documents differently from READ_PARAMETERS.
ROUTE_PARAMETERS: dict[str, dict[str, tuple[dict[str, Any], str]]] = {
    "/v1/accounts": {
        "limit": _page_limit("Accounts", ACCOUNT_PAGE_ACCOUNTS_MAX, ACCOUNT_PAGE_ACCOUNTS_DEFAULT),
        "cursor": (
            {"type": "string", "minLength": 1, "maxLength": ACCOUNT_CURSOR_LENGTH_MAX},
            "The next_cursor of the page before (opaque; anything else: 400 BAD_CURSOR). Absent: the first page.",
        ),
        "owner": (
            {"type": "string", "minLength": 1, "maxLength": PRINCIPAL_ID_LENGTH_MAX},
            "Only the accounts of this owner (a principal id), where the views carry owners "
            "(400 BAD_PARAMETER where they do not yet). An OWNER's listing is always its own (another: 403).",
        ),
    },
}


def operation_id(route: ReadRoute) -> str:
    """readAccount, readHistory, readAsOf, readTurnover, readRollup, readTotals."""
    last = route.path.rsplit("/", 1)[-1]
    name = "account" if last == "{account_id}" else last
    return "read" + "".join(part.title() for part in name.split("-"))


def _read_operation(route: ReadRoute, answer: dict[str, Any]) -> dict[str, Any]:
    parameters = []
    if route.per_account:
        parameters.append(
            _parameter(
                "account_id",
                "path",
                _identifier("account_id"),
                "The account id, percent-encoded as one path segment.",
                required=True,
            )
        )
    for name in route.parameters:
        schema, description = ROUTE_PARAMETERS.get(route.path, {}).get(name) or READ_PARAMETERS[name]
        parameters.append(_parameter(name, "query", schema, description))
    statuses = [400, 404, 409, 422, 429, 502, 503] if route.per_account else [400, 429, 502, 503]
    return {
        "get": {
            "operationId": operation_id(route),
            "summary": route.summary,
            "parameters": parameters,
            "responses": {
                "200": {"description": "The answer.", "content": _json({"type": "object", **answer})},
                **_responses(statuses),
            },
        }
    }


def _command_operations() -> dict[str, Any]:
    result_or_pending = {"oneOf": [_ref("CommandResult"), _ref("CommandPending")]}
    command_body = {
        "oneOf": [_ref(cls.__name__) for cls in commands.COMMAND_TYPES],
        "discriminator": {
            "propertyName": "type",
            "mapping": {cls.__name__: SCHEMA_PREFIX + cls.__name__ for cls in commands.COMMAND_TYPES},
        },
    }
    submit = {
        "operationId": "submitCommand",
        "summary": "Submit a command and (by default) wait for its result.",
        "description": "Waits at most the gateway's result timeout; then, or with `wait=false` or "
        "`Prefer: respond-async`, answers 202 with the status URL (also in Location). A command the ledger "
        "refused answers the error body with the ledger's code and the result in `details.result`.",
        "parameters": [
            _parameter(
                "wait",
                "query",
                {"type": "string", "enum": ["true", "false"]},
                "`false`: answer 202 once Kafka has the command.",
            ),
            _parameter(
                "Idempotency-Key",
                "header",
                {"type": "string", "minLength": 1, "maxLength": DEDUP_ID_LENGTH_MAX, "pattern": IDENTIFIER_PATTERN},
                "The dedup id: the same key with the same body answers the original result (replayed, header "
                "Idempotent-Replayed: true); with another body 409 DEDUP_CONFLICT.",
            ),
            _parameter("Prefer", "header", {"type": "string"}, "`respond-async`: as wait=false."),
        ],
        "requestBody": {"required": True, "content": _json(command_body)},
        "responses": {
            "200": {
                "description": "Accepted by the ledger.",
                "content": _json(_ref("CommandResult")),
                "headers": {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}},
                "links": {
                    "ReadTheAccount": {
                        "operationId": "readAccount",
                        "parameters": {
                            "account_id": "$response.body#/positions/0/account_id",
                            "min_seq": "$response.body#/positions/0/sequence",
                        },
                    },
                    "ReadItsHistory": {
                        "operationId": "readHistory",
                        "parameters": {
                            "account_id": "$response.body#/positions/0/account_id",
                            "min_seq": "$response.body#/positions/0/sequence",
                        },
                    },
                },
            },
            "202": {
                "description": "In Kafka; no result yet.",
                "content": _json(_ref("CommandPending")),
                "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
            },
            **_responses([400, 404, 409, 413, 415, 422, 429, 503]),
        },
    }
    lookup = {
        "operationId": "commandOutcome",
        "summary": "The outcome of an earlier command, asked of the shard that decided it.",
        "description": "account_id is required: the routing key the command was sent with (its account_id, a "
        "transfer's from_account_id, a batch's batch_id). A duplicate's own command id is not known to the "
        "ledger: ask with the original's (original_command_id).",
        "parameters": [
            _parameter(
                "command_id", "path", _identifier("command_id"), "The command id, percent-encoded.", required=True
            ),
            _parameter(
                "account_id",
                "query",
                {"type": "string", "minLength": 1, "maxLength": ACCOUNT_ID_LENGTH_MAX, "pattern": IDENTIFIER_PATTERN},
                "The routing key the command was sent with.",
                required=True,
            ),
        ],
        "responses": {
            "200": {"description": "Its result, or PENDING.", "content": _json(result_or_pending)},
            **_responses([400, 404, 409, 422, 429, 502, 503]),
        },
    }
    bulk = {
        "operationId": "submitCommands",
        "summary": f"Submit 1..{BULK_COMMANDS_MAX} independent commands and wait for each result.",
        "description": "Each command is what POST /v1/commands takes, with its own dedup_id (no Idempotency-Key "
        "header). The request is checked whole first: a malformed or forbidden command refuses it with that "
        "command's code and details.index, and nothing is sent. Then each command is decided on its own, exactly "
        "once (sent to Kafka in bundles, one per partition); the answer has one entry per command, in order: its "
        "result (ACCEPTED, or REJECTED with the ledger's code), or PENDING with its status URL if it had none "
        "within the gateway's result timeout. The same request again answers the original results (replayed).",
        "requestBody": {
            "required": True,
            "content": _json(
                {
                    "type": "object",
                    "properties": {
                        "commands": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": BULK_COMMANDS_MAX,
                            "items": command_body,
                        }
                    },
                    "required": ["commands"],
                    "additionalProperties": False,
                }
            ),
        },
        "responses": {
            "200": {
                "description": "One entry per command, in the order sent.",
                "content": _json(
                    {
                        "type": "object",
                        "properties": {"results": {"type": "array", "items": result_or_pending}},
                        "required": ["results"],
                    }
                ),
            },
            **_responses([400, 409, 413, 415, 422, 429, 503]),
        },
    }
    return {
        "/v1/commands": {"post": submit},
        "/v1/commands/bulk": {"post": bulk},
        "/v1/commands/{command_id}": {"get": lookup},
    }


def _service_operations() -> dict[str, Any]:
    def simple(
        operation_id: str, summary: str, schema: dict[str, Any], *, unready: bool = False, public: bool = True
    ) -> Any:
        responses: dict[str, Any] = {"200": {"description": summary, "content": _json(schema)}}
        if unready:
            responses["503"] = {"description": "Not ready.", "content": _json(schema)}
        operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "responses": responses}
        if public:
            operation["security"] = []  # no credential needed
        else:
            responses.update(_responses([]))
        return {"get": operation}

    status = {
        "type": "object",
        "properties": {
            "ready": {"type": "boolean"},
            "pending": {"type": "integer", "minimum": 0, "description": "Submits waiting for their results."},
            "pending_max": {"type": "integer"},
            "reads_in_flight": {"type": "integer", "minimum": 0},
        },
        "required": ["ready", "pending", "pending_max", "reads_in_flight"],
    }
    return {
        "/v1/openapi.json": simple("openapi", "This document.", {"type": "object"}),
        "/v1/status": simple("status", "The gateway's own counters.", status, public=False),
        "/health": simple(
            "health", "Alive.", {"type": "object", "properties": {"alive": {"const": True}}, "required": ["alive"]}
        ),
        "/ready": simple("ready", "Ready to take commands, and its counters.", status, unready=True),
    }


@functools.cache
def document() -> dict[str, Any]:
    answers = _read_answers()
    paths: dict[str, Any] = {**_command_operations()}
    for route in READ_ROUTES:
        paths[route.path] = _read_operation(route, answers[route.path])
    paths.update(_service_operations())
    schemas: dict[str, Any] = {cls.__name__: command_schema(cls) for cls in commands.COMMAND_TYPES}
    schemas.update(
        {
            "BatchLeg": _leg_schema(),
            "Metadata": _metadata_schema(),
            "CommandResult": _result_schema(),
            "Position": _position_schema(),
            "CommandPending": _pending_schema(),
            "Error": _error_schema(),
            "Account": _account_schema(),
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamwallet",
            "version": API_VERSION,
            "description": "Commands to the ledger and reads of its views. Money is exact: decimal strings of the "
            "currency or integers of minor units, never JSON numbers with a fraction. Every error is "
            '{"code", "message", "details"}. Every operation but health, readiness and this document needs '
            "`Authorization: Bearer` with a JWT or an API key; what a principal may do follows its roles "
            "(OWNER, OPERATOR, ADMIN, AUDITOR: see the README's Authentication section).",
        },
        "security": [{SECURITY_SCHEME: []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT, or an API key sw_<key id>_<secret>",
                    "description": "A JWT (HS256, RS256 or ES256; exp, aud, iss and sub required; roles in the "
                    "`roles` claim) or an API key made with `streamwallet apikeys create`.",
                }
            },
            "schemas": schemas,
            "responses": {
                f"Error{status}": _error_response(status, description, retry=retry)
                for status, (description, retry) in ERROR_RESPONSES.items()
            },
        },
    }
