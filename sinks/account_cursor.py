"""The opaque cursor of the account listing (`GET /accounts?cursor=`): the last account id
of the page before, base64url-encoded behind a version tag. Clients pass it back as they got
it; anything else is refused with BAD_CURSOR, never read as a position."""

from __future__ import annotations

import base64
import binascii

from ledger.commands import is_identifier
from ledger.limits import ACCOUNT_ID_LENGTH_MAX

CURSOR_VERSION = "a1."
# base64url of the longest account id, behind the tag: what a valid cursor can be at most.
CURSOR_LENGTH_MAX = len(CURSOR_VERSION) + (ACCOUNT_ID_LENGTH_MAX * 4 + 2) // 3
BAD_CURSOR = "BAD_CURSOR"


class BadCursorError(ValueError):
    """A cursor this service did not make."""


def encode_cursor(account_id: str) -> str:
    return CURSOR_VERSION + base64.urlsafe_b64encode(account_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The account id a cursor carries, or BadCursorError."""
    if len(cursor) > CURSOR_LENGTH_MAX or not cursor.startswith(CURSOR_VERSION):
        raise BadCursorError("cursor is not one this service made: pass next_cursor back as it came")
    body = cursor.removeprefix(CURSOR_VERSION)
    try:
        if not body.isascii() or "=" in body:
            raise ValueError("padding")
        account_id = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursorError("cursor is not one this service made: pass next_cursor back as it came") from None
    if not is_identifier(account_id, ACCOUNT_ID_LENGTH_MAX) or encode_cursor(account_id) != cursor:
        raise BadCursorError("cursor is not one this service made: pass next_cursor back as it came")
    return account_id
