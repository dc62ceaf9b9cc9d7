"""Errors as ClickHouse's HTTP interface returns them: a numeric code and its name, the
text `Code: N. DB::Exception: <message> (NAME) (version V)`, the HTTP status ClickHouse
maps the code to, and the `X-ClickHouse-Exception-Code` header (what clickhouse-connect
turns into a `DatabaseError` with `.code`).

Errors raised by the engine keep their code and text; the endpoint's own refusals use
the codes ClickHouse uses for the same situation.
"""

from __future__ import annotations

import re

# The codes the endpoint itself answers with (numbers and names as chDB's errorCodeToName has them).
BAD_ARGUMENTS = (36, "BAD_ARGUMENTS")
NOT_IMPLEMENTED = (48, "NOT_IMPLEMENTED")
SYNTAX_ERROR = (62, "SYNTAX_ERROR")
UNKNOWN_FORMAT = (73, "UNKNOWN_FORMAT")
UNKNOWN_SETTING = (115, "UNKNOWN_SETTING")
READONLY = (164, "READONLY")
TOO_MANY_SIMULTANEOUS_QUERIES = (202, "TOO_MANY_SIMULTANEOUS_QUERIES")
QUERY_IS_TOO_LARGE = (229, "QUERY_IS_TOO_LARGE")
INTO_OUTFILE_NOT_ALLOWED = (358, "INTO_OUTFILE_NOT_ALLOWED")
TOO_MANY_ROWS_OR_BYTES = (396, "TOO_MANY_ROWS_OR_BYTES")
FUNCTION_NOT_ALLOWED = (446, "FUNCTION_NOT_ALLOWED")
ACCESS_DENIED = (497, "ACCESS_DENIED")
AUTHENTICATION_FAILED = (516, "AUTHENTICATION_FAILED")
UNKNOWN_EXCEPTION = (1002, "UNKNOWN_EXCEPTION")

# ClickHouse's own mapping of error names to HTTP statuses (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp);
# every other code is 500.
_STATUS_BY_NAME: dict[str, int] = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(
        ("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"), 403
    ),
    **dict.fromkeys(
        (
            "BAD_ARGUMENTS",
            "CANNOT_COMPILE_REGEXP",
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_UUID",
            "DUPLICATE_COLUMN",
            "ILLEGAL_COLUMN",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "THERE_IS_NO_COLUMN",
            "TOO_DEEP_AST",
            "TOO_BIG_AST",
            "UNEXPECTED_AST_STRUCTURE",
            "SYNTAX_ERROR",
            "INCORRECT_DATA",
            "TYPE_MISMATCH",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        ),
        400,
    ),
    **dict.fromkeys(
        (
            "UNKNOWN_TABLE",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_TYPE",
            "UNKNOWN_STORAGE",
            "UNKNOWN_DATABASE",
            "UNKNOWN_SETTING",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_FORMAT",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_TYPE_OF_QUERY",
            "UNKNOWN_ROLE",
        ),
        404,
    ),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    **dict.fromkeys(("SOCKET_TIMEOUT", "CANNOT_OPEN_FILE", "CANNOT_SCHEDULE_TASK"), 503),
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}

_CODE = re.compile(r"Code: (\d+)\. ")
_NAME_AT_END = re.compile(r"\(([A-Z][A-Z0-9_]*)\)\s*$")
_EXCEPTION_PREFIX = re.compile(r"^(?:Code: \d+\. DB::Exception: )+")
_OUR_WRAPPER = re.compile(r"\s*: In scope SELECT (?:formatQuerySingleLine|normalizeQuery)\(.*$", re.DOTALL)
MESSAGE_CHARACTERS_MAX = 4000  # an engine message quoting a huge query is cut here


class ClickHouseError(Exception):
    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(code, name, message)
        self.code = code
        self.name = name
        self.message = message

    @classmethod
    def of(cls, code_and_name: tuple[int, str], message: str) -> ClickHouseError:
        code, name = code_and_name
        return cls(code, name, message)

    @property
    def http_status(self) -> int:
        return _STATUS_BY_NAME.get(self.name, 500)

    def body(self, version: str) -> str:
        return f"Code: {self.code}. DB::Exception: {self.message} ({self.name}) (version {version})\n"

    def __str__(self) -> str:
        return f"Code: {self.code}. {self.message} ({self.name})"


def from_engine(error: Exception) -> ClickHouseError:
    """chDB's exception as the ClickHouse error it reports: its code, name and innermost
    message (chDB nests `Code: N. DB::Exception: ...` several times over)."""
    text = str(error).strip()
    code = _CODE.search(text)
    if code is None:
        return ClickHouseError.of(UNKNOWN_EXCEPTION, f"{type(error).__name__}: {text}"[:MESSAGE_CHARACTERS_MAX])
    named = _NAME_AT_END.search(text)
    name = named.group(1) if named else UNKNOWN_EXCEPTION[1]  # chDB cuts its message at a NUL character
    message = _EXCEPTION_PREFIX.sub("", text[code.start() :])
    end = message.find(f" ({name})")
    if end >= 0:
        message = message[:end]
    message = _OUR_WRAPPER.sub("", message)
    return ClickHouseError(int(code.group(1)), name, message[:MESSAGE_CHARACTERS_MAX])
