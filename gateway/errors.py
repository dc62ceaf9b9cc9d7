"""The one error body of the HTTP API, its stable codes and their statuses.

Every answer that is not a success is `{"code": ..., "message": ..., "details": {...}}`.
A command the ledger refused keeps the ledger's code (`ledger.errors.ErrorCode`); what
the gateway itself refuses has a code of its own (`GatewayCode`). Codes are part of the
contract: never rename or reuse one.
"""

from __future__ import annotations

import enum
from typing import Any

from ledger.errors import ErrorCode


class GatewayCode(enum.StrEnum):
    # The request is not a well-formed command or read (400).
    BAD_JSON = "BAD_JSON"
    TOO_DEEP = "TOO_DEEP"
    BAD_REQUEST = "BAD_REQUEST"
    MISSING_FIELD = "MISSING_FIELD"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    UNKNOWN_COMMAND_TYPE = "UNKNOWN_COMMAND_TYPE"
    TOO_MANY_LEGS = "TOO_MANY_LEGS"
    TOO_MANY_COMMANDS = "TOO_MANY_COMMANDS"  # a bulk request with no commands or more than BULK_COMMANDS_MAX
    TOO_MANY_METADATA_ENTRIES = "TOO_MANY_METADATA_ENTRIES"
    BAD_PARAMETER = "BAD_PARAMETER"
    UNKNOWN_PARAMETER = "UNKNOWN_PARAMETER"
    PAGE_TOO_LARGE = "PAGE_TOO_LARGE"
    BAD_CURSOR = "BAD_CURSOR"  # a listing cursor that is not a next_cursor the API gave
    BAD_IDEMPOTENCY_KEY = "BAD_IDEMPOTENCY_KEY"
    PRINCIPAL_IN_BODY = "PRINCIPAL_IN_BODY"  # the principal comes from the credential, never from a body
    # Who is asking (401, with WWW-Authenticate) and whether it may (403).
    UNAUTHENTICATED = "UNAUTHENTICATED"  # no credential
    INVALID_CREDENTIAL = "INVALID_CREDENTIAL"  # not a token or key we can verify, or a claim that does not fit
    CREDENTIAL_EXPIRED = "CREDENTIAL_EXPIRED"  # a token past its exp (beyond the clock skew)
    CREDENTIAL_NOT_YET_VALID = "CREDENTIAL_NOT_YET_VALID"  # a token before its nbf or iat (beyond the skew)
    CREDENTIAL_REVOKED = "CREDENTIAL_REVOKED"  # an API key revoked with `streamwallet apikeys revoke`
    FORBIDDEN = "FORBIDDEN"  # the principal's roles do not allow this, or the account is not its own
    # A well-formed request that contradicts itself or lacks its idempotency identity (422).
    IDEMPOTENCY_KEY_CONFLICT = "IDEMPOTENCY_KEY_CONFLICT"
    DEDUP_ID_REQUIRED = "DEDUP_ID_REQUIRED"
    CONFLICTING_PARAMETERS = "CONFLICTING_PARAMETERS"
    # Routing and transport.
    NOT_FOUND = "NOT_FOUND"  # 404: no such route
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"  # 405, with Allow
    BODY_TOO_LARGE = "BODY_TOO_LARGE"  # 413
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"  # 415
    # State of the gateway or of what it waits for.
    COMMAND_ID_PENDING = "COMMAND_ID_PENDING"  # 409: a command with this id already waits here
    NOT_YET = "NOT_YET"  # 409, with Retry-After: the view has not reached min_seq yet
    PENDING_LIMIT = "PENDING_LIMIT"  # 429, with Retry-After
    RATE_LIMITED = "RATE_LIMITED"  # 429, with Retry-After: this principal's requests exceed its rate
    READS_BUSY = "READS_BUSY"  # 429, with Retry-After
    NOT_READY = "NOT_READY"  # 503, with Retry-After
    KAFKA_UNAVAILABLE = "KAFKA_UNAVAILABLE"  # 503, with Retry-After
    QUERY_UNAVAILABLE = "QUERY_UNAVAILABLE"  # 503, with Retry-After
    RESULT_TIMEOUT = "RESULT_TIMEOUT"  # 503, with Retry-After: a lookup got no answer in time
    QUERY_FAILED = "QUERY_FAILED"  # 502: the query service answered with an error of its own
    INTERNAL = "INTERNAL"  # 500: a bug in the gateway (logged); no input should ever cause it


RETRY_AFTER_S = 1

# The HTTP status of each ledger rejection: a stateless rule (422), the state of an
# account, hold or transfer (409), something that does not exist (404), back-pressure (429),
# a partition that cannot take new commands yet (503).
LEDGER_STATUSES: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED: 422,
    ErrorCode.INVALID_AMOUNT: 422,
    ErrorCode.INVALID_CURRENCY: 422,
    ErrorCode.INVALID_LIMITS: 422,
    ErrorCode.INVALID_EXPIRY: 422,
    ErrorCode.SAME_ACCOUNT: 422,
    ErrorCode.DUPLICATE_LEG: 422,
    ErrorCode.UNBALANCED_BATCH: 422,
    ErrorCode.DEDUP_CONFLICT: 409,
    ErrorCode.DUPLICATE_BACKLOG: 429,
    ErrorCode.DEDUP_WINDOW_FULL: 503,  # the partition's idempotency window is full: retry once it drains
    ErrorCode.ACCOUNT_NOT_FOUND: 404,
    ErrorCode.ACCOUNT_EXISTS: 409,
    ErrorCode.HOLD_NOT_FOUND: 404,
    ErrorCode.HOLD_EXISTS: 409,
    ErrorCode.TRANSFER_NOT_FOUND: 404,
    ErrorCode.COMMAND_NOT_FOUND: 404,
    ErrorCode.ACCOUNT_CLOSED: 409,
    ErrorCode.ACCOUNT_LOCKED: 409,
    ErrorCode.ACCOUNT_NOT_LOCKED: 409,
    ErrorCode.CURRENCY_MISMATCH: 409,
    ErrorCode.CREDIT_OUT_OF_ORDER: 409,  # refused at the destination after a forged leg; the money went back
    ErrorCode.HOLD_EXPIRED: 409,
    ErrorCode.HOLD_ALREADY_FINALIZED: 409,
    ErrorCode.ALREADY_REVERSED: 409,
    ErrorCode.BALANCE_NOT_ZERO: 409,
    ErrorCode.INSUFFICIENT_FUNDS: 409,
    ErrorCode.LIMIT_EXCEEDED: 409,
    ErrorCode.CAPTURE_EXCEEDS_HOLD: 409,
    ErrorCode.VELOCITY_LIMIT_EXCEEDED: 409,  # an account's velocity rule: the window must move on first
    ErrorCode.BATCH_TIMEOUT: 409,
    ErrorCode.ID_IN_USE: 409,
    ErrorCode.FORBIDDEN: 403,  # the shard's authorization (the gateway refuses most of these before)
}

GATEWAY_STATUSES: dict[GatewayCode, int] = {
    **dict.fromkeys(
        (
            GatewayCode.BAD_JSON,
            GatewayCode.TOO_DEEP,
            GatewayCode.BAD_REQUEST,
            GatewayCode.MISSING_FIELD,
            GatewayCode.UNKNOWN_FIELD,
            GatewayCode.UNKNOWN_COMMAND_TYPE,
            GatewayCode.TOO_MANY_LEGS,
            GatewayCode.TOO_MANY_COMMANDS,
            GatewayCode.TOO_MANY_METADATA_ENTRIES,
            GatewayCode.BAD_PARAMETER,
            GatewayCode.UNKNOWN_PARAMETER,
            GatewayCode.PAGE_TOO_LARGE,
            GatewayCode.BAD_CURSOR,
            GatewayCode.BAD_IDEMPOTENCY_KEY,
            GatewayCode.PRINCIPAL_IN_BODY,
        ),
        400,
    ),
    **dict.fromkeys(
        (
            GatewayCode.UNAUTHENTICATED,
            GatewayCode.INVALID_CREDENTIAL,
            GatewayCode.CREDENTIAL_EXPIRED,
            GatewayCode.CREDENTIAL_NOT_YET_VALID,
            GatewayCode.CREDENTIAL_REVOKED,
        ),
        401,
    ),
    GatewayCode.FORBIDDEN: 403,
    GatewayCode.IDEMPOTENCY_KEY_CONFLICT: 422,
    GatewayCode.DEDUP_ID_REQUIRED: 422,
    GatewayCode.CONFLICTING_PARAMETERS: 422,
    GatewayCode.NOT_FOUND: 404,
    GatewayCode.METHOD_NOT_ALLOWED: 405,
    GatewayCode.BODY_TOO_LARGE: 413,
    GatewayCode.UNSUPPORTED_MEDIA_TYPE: 415,
    GatewayCode.COMMAND_ID_PENDING: 409,
    GatewayCode.NOT_YET: 409,
    GatewayCode.PENDING_LIMIT: 429,
    GatewayCode.RATE_LIMITED: 429,
    GatewayCode.READS_BUSY: 429,
    GatewayCode.NOT_READY: 503,
    GatewayCode.KAFKA_UNAVAILABLE: 503,
    GatewayCode.QUERY_UNAVAILABLE: 503,
    GatewayCode.RESULT_TIMEOUT: 503,
    GatewayCode.QUERY_FAILED: 502,
    GatewayCode.INTERNAL: 500,
}

# Answers that say "try again later" carry Retry-After.
RETRY_STATUSES = frozenset({429, 503})
NOT_YET_CODE = GatewayCode.NOT_YET


def status_of(code: GatewayCode | ErrorCode) -> int:
    if isinstance(code, GatewayCode):
        return GATEWAY_STATUSES[code]
    return LEDGER_STATUSES[code]


class ApiError(Exception):
    """A request answered with the error body. Raised anywhere below a handler; the
    gateway's middleware turns it into the response."""

    def __init__(
        self,
        code: GatewayCode | ErrorCode,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.extra_headers = headers or {}

    @property
    def status(self) -> int:
        return status_of(self.code)

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)

    def headers(self) -> dict[str, str]:
        return {**retry_headers(self.status, self.code), **self.extra_headers}


def error_body(code: GatewayCode | ErrorCode, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code.value, "message": message, "details": details or {}}


def retry_headers(status: int, code: GatewayCode | ErrorCode) -> dict[str, str]:
    if status in RETRY_STATUSES or code is NOT_YET_CODE:
        return {"Retry-After": str(RETRY_AFTER_S)}
    return {}
