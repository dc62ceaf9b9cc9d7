"""A batch of AuditEvents decoded by ClickHouse itself (sinks/avro_batch.py), then written
into the `audit` table by SQL.

Decoding each record in Python and inserting its row took the audit sink 14 µs a record
(1.3 s of CPU for the 93,187 records of a 1,000,127-event bench.query topic), on the GIL the
events sink needs while it catches up. ClickHouse reads the batch's container into
`audit_incoming`, a temporary table of the audit sink's own session; one query checks
what it read, and one INSERT ... SELECT writes the trail.
"""

from __future__ import annotations

from sinks.avro_batch import Sent, valid_utf8

# A temporary table: one per client session (the audit sink's own), gone with it.
AUDIT_INCOMING_TABLE = "audit_incoming"
# The AuditEvent's fields under their Avro names, as Avro longs and strings; emptied before
# each batch, so nothing here outlives one batch.
CREATE_AUDIT_INCOMING_SQL = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {AUDIT_INCOMING_TABLE} (
    `principal.principal_id` String,
    `principal.roles` Array(String),
    action String,
    account_id String,
    command_id String,
    outcome String,
    code String,
    message String,
    source String,
    occurred_at_ms Int64,
    batch_check Int64 DEFAULT 0,
    kafka_partition Int64,
    kafka_offset Int64
)
ENGINE = Memory
"""
_STRINGS = ["`principal.principal_id`", "action", "account_id", "command_id", "outcome", "code", "message", "source"]
VALID_UTF8 = valid_utf8(_STRINGS, arrays=["`principal.roles`"])
# The audit table's columns (sinks/audit.py AUDIT_COLUMNS) from the incoming table's.
_SELECTED = [
    "`principal.principal_id`",
    "`principal.roles`",
    "action",
    "account_id",
    "command_id",
    "outcome",
    "code",
    "message",
    "source",
    "fromUnixTimestamp64Milli(occurred_at_ms, 'UTC')",
    "kafka_partition",
    "kafka_offset",
]


def checked_sql(check: int) -> str:
    """The batch's rows, and those not read where the sink put them or holding a string the
    codec would refuse (as `Sent` and `VALID_UTF8` describe)."""
    return f"SELECT count(), countIf(batch_check != {check} OR NOT ({VALID_UTF8})) FROM {AUDIT_INCOMING_TABLE}"


def read_back(sent: Sent, rows: list[tuple[int, int]]) -> str | None:
    """Why what ClickHouse read (`checked_sql`'s row) is not the records sent; None if it is."""
    records, wrong = (int(value) for value in rows[0])
    if records != sent.records:
        return f"ClickHouse read {records} records, the sink sent {sent.records}"
    if wrong:
        return (
            f"{wrong} records were not read where the sink put them (bytes after a body), "
            f"or hold a string that is not UTF-8"
        )
    return None


def audit_sql(database: str, columns: list[str]) -> str:
    """The incoming rows into the audit table. A batch's rows are unique per key (their
    Kafka positions): sorting them for duplicates on insert is wasted."""
    return (
        f"INSERT INTO {database}.audit ({', '.join(columns)}) "
        f"SELECT {', '.join(_SELECTED)} FROM {AUDIT_INCOMING_TABLE} SETTINGS optimize_on_insert = 0"
    )
