"""A batch of AccountEvents decoded by ClickHouse itself (sinks/avro_batch.py), then
written by SQL.

ClickHouse reads the batch's container into `account_events_incoming`, a temporary table
of the sink's own session (sinks of several query services on one ClickHouse server never
see each other's), and from there plain SQL fills account_events, account_latest and
account_tree. A record framed with an older schema version, or a registry id not ours, is
decoded by the codec and inserted into the same table as a row.

Beside the checks every container gets (sinks/avro_batch.py), events get one more: a
negative sequence would wrap in the view's UInt64 (EventDecoder refuses it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sinks.avro_batch import Sent, valid_utf8

# A temporary table: one per client session (each sink has its own), gone with it.
INCOMING_TABLE = "account_events_incoming"
# The AccountEvent's fields under their Avro names, as Avro longs and strings; emptied before
# each batch, so nothing here outlives one batch.
CREATE_INCOMING_SQL = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {INCOMING_TABLE} (
    account_id String,
    sequence Int64,
    kind String,
    amount Int64,
    held_change Int64,
    currency String,
    balance Int64,
    held Int64,
    available Int64,
    pending_in Int64,
    pending_out Int64,
    lower_limit Int64,
    upper_limit Int64,
    status String,
    parent_account_id Nullable(String),
    metadata Map(String, String),
    command_id String,
    dedup_id String,
    correlation_id Nullable(String),
    counterparty_account_id Nullable(String),
    code Nullable(String),
    occurred_at_ms Int64,
    previous_hash String DEFAULT '',
    hash String DEFAULT '',
    owner String,
    `principal.principal_id` String,
    `principal.roles` Array(String) DEFAULT [],
    batch_check Int64 DEFAULT 0,
    kafka_partition Int64,
    kafka_offset Int64
)
ENGINE = Memory
"""
# The columns of the incoming table whose values are strings, as ClickHouse must check them.
_STRINGS = [
    "account_id",
    "currency",
    "kind",
    "status",
    "command_id",
    "dedup_id",
    "owner",
    "previous_hash",
    "hash",
    "`principal.principal_id`",
]
_NULLABLE_STRINGS = ["parent_account_id", "correlation_id", "counterparty_account_id", "code"]
_STRING_ARRAYS = ["mapKeys(metadata)", "mapValues(metadata)", "`principal.roles`"]
VALID_UTF8 = valid_utf8(_STRINGS, _NULLABLE_STRINGS, _STRING_ARRAYS)


def received_sql(check: int) -> str:
    """Per account: its newest sequence and that event's time (for read-your-writes); and on
    every row the batch's totals: the rows, those not read where the sink put them or holding
    a string the codec would refuse or a sequence the view cannot hold (as `Sent` and
    `VALID_UTF8` describe), and those with a parent. One query, where two cost a round trip
    more per batch (a lone event's batch is all round trips)."""
    totals = (
        f"SELECT tuple(count(), countIf(batch_check != {check} OR sequence < 0 OR NOT ({VALID_UTF8})), "
        f"countIf(parent_account_id IS NOT NULL)) FROM {INCOMING_TABLE}"
    )
    return (
        f"SELECT account_id, max(sequence), max(occurred_at_ms), ({totals}) FROM {INCOMING_TABLE} GROUP BY account_id"
    )


@dataclasses.dataclass(slots=True)
class Received:
    """What a batch put into the incoming table."""

    newest: dict[str, int] = dataclasses.field(default_factory=dict)  # account -> its newest sequence
    newest_ms: int | None = None  # the newest event's time
    parented: int = 0  # rows with a parent account (account_tree has nothing to learn without)
    # account -> the row the sink wrote to account_latest, when the codec decoded the batch
    # (ClickHouse decodes a large one: the sink never holds its rows).
    latest: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    # account -> the parent its newest row names, when the codec decoded the batch
    parents: dict[str, str] = dataclasses.field(default_factory=dict)

    def add(self, account_id: str, sequence: int, occurred_at_ms: int, parented: bool) -> None:
        """A row the codec decoded."""
        self.newest[account_id] = max(sequence, self.newest.get(account_id, sequence))
        self.newest_ms = occurred_at_ms if self.newest_ms is None else max(self.newest_ms, occurred_at_ms)
        self.parented += parented


def read_back(sent: Sent, rows: list[tuple[Any, ...]]) -> Received | str:
    """What ClickHouse read (`received_sql`'s rows), or why it is not the records sent, each
    as the codec reads it."""
    records, wrong, parented = (int(value) for value in rows[0][3]) if rows else (0, 0, 0)
    if records != sent.records:
        return f"ClickHouse read {records} records, the sink sent {sent.records}"
    if wrong:
        return (
            f"{wrong} records were not read where the sink put them (bytes after a body), or hold a string "
            f"that is not UTF-8 or a negative sequence"
        )
    received = Received(newest={account: int(sequence) for account, sequence, _, _ in rows}, parented=parented)
    received.newest_ms = max(int(occurred_at_ms) for _, _, occurred_at_ms, _ in rows)
    return received


# -- from the incoming table into the views --------------------------------------------------


def _occurred_at(expression: str) -> str:
    return f"fromUnixTimestamp64Milli({expression}, 'UTC')"


# Columns of the views whose source in the incoming table has another name or form.
_SOURCES = {
    "occurred_at": _occurred_at("occurred_at_ms"),
    "updated_at": _occurred_at("occurred_at_ms"),
    "principal_id": "`principal.principal_id`",
}


# Rows of one batch are unique per key already (an account's sequence, an account): sorting
# them for duplicates on insert is wasted (FINAL and merges collapse across batches). The
# events insert took 40 ms per 20,000 events with it, 26 ms without.
_INSERT_SETTINGS = " SETTINGS optimize_on_insert = 0"


def events_sql(database: str, columns: list[str]) -> str:
    """The incoming rows into account_events."""
    selected = ", ".join(_SOURCES.get(column, column) for column in columns)
    return (
        f"INSERT INTO {database}.account_events ({', '.join(columns)}) "
        f"SELECT {selected} FROM {INCOMING_TABLE}{_INSERT_SETTINGS}"
    )


def latest_sql(database: str, columns: list[str]) -> str:
    """Each account's newest incoming row into account_latest: the row itself (LIMIT 1 BY),
    NULLs included (95 ms per 20,000 events with an argMax per column, 21 ms so)."""
    selected = ", ".join(_SOURCES.get(column, column) for column in columns)
    return (
        f"INSERT INTO {database}.account_latest ({', '.join(columns)}) "
        f"SELECT {selected} FROM {INCOMING_TABLE} "
        f"ORDER BY account_id, sequence DESC LIMIT 1 BY account_id{_INSERT_SETTINGS}"
    )


def tree_sql(database: str) -> str:
    """Each account's parent, as its newest incoming row says, into account_tree. argMax of
    a one-element tuple keeps a NULL (a bare argMax would skip it and take an older row's)."""
    return (
        f"INSERT INTO {database}.account_tree (parent_account_id, account_id) "
        f"SELECT assumeNotNull(parent), account_id FROM ("
        f"SELECT account_id, argMax(tuple(parent_account_id), sequence).1 AS parent "
        f"FROM {INCOMING_TABLE} GROUP BY account_id) WHERE parent IS NOT NULL{_INSERT_SETTINGS}"
    )
