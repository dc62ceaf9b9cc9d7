"""Every bound on what one HTTP request can make the system do, with its unit last.
Exceeding one is a 4xx with a code of its own (gateway/errors.py)."""

from __future__ import annotations

import datetime

from ledger.limits import AMOUNT_MAX, BATCH_LEGS_MAX, METADATA_ENTRIES_MAX

BODY_BYTES_MAX = 256 * 1024  # BODY_TOO_LARGE (413)
JSON_DEPTH_MAX = 8  # objects and arrays nested in a body; a batch needs 3: TOO_DEEP (400)
BULK_COMMANDS_MAX = 1000  # commands of one POST /v1/commands/bulk: TOO_MANY_COMMANDS (400)
LEGS_MAX = BATCH_LEGS_MAX  # legs of one batch: TOO_MANY_LEGS (400)
METADATA_ENTRIES_PER_COMMAND_MAX = METADATA_ENTRIES_MAX  # TOO_MANY_METADATA_ENTRIES (400)
# Integers a command or a read may carry: Avro longs (the codec cannot carry more).
INTEGER_MIN = -(2**63)
INTEGER_MAX = 2**63 - 1
MONEY_MINOR_MAX = AMOUNT_MAX
# History pages: the query service's own bound (sinks/views.py HISTORY_PAGE_EVENTS_MAX; a
# test checks they agree): PAGE_TOO_LARGE (400).
HISTORY_PAGE_EVENTS_MAX = 1000
HISTORY_PAGE_EVENTS_DEFAULT = 100
# Account listing pages (sinks/views.py ACCOUNT_PAGE_ACCOUNTS_MAX, checked alike): PAGE_TOO_LARGE.
ACCOUNT_PAGE_ACCOUNTS_MAX = 1000
ACCOUNT_PAGE_ACCOUNTS_DEFAULT = 100
# The listing's opaque cursor (sinks/account_cursor.py makes it; at most 89 characters today).
ACCOUNT_CURSOR_LENGTH_MAX = 128
# Times and days the views can answer for (ClickHouse DateTime64 and Date ranges).
AT_MS_MAX = int(datetime.datetime(2262, 1, 1, tzinfo=datetime.UTC).timestamp() * 1000)
DAY_MIN = datetime.date(1970, 1, 1)
DAY_MAX = datetime.date(2149, 6, 6)
# Reads forwarded to the query service at once, and of them roll-ups (a roll-up walks a
# whole account tree): more answer READS_BUSY (429) with Retry-After.
READS_IN_FLIGHT_MAX = 64
ROLLUPS_IN_FLIGHT_MAX = 4
READ_TIMEOUT_S = 30.0  # a read the query service has not answered by then: QUERY_UNAVAILABLE
QUERY_PARAMETER_LENGTH_MAX = 64  # characters of one query parameter value
