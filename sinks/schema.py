"""The query side's tables, created by versioned migrations applied at start.

DDL is kept to what current ClickHouse servers and chDB both accept. Every table is a
ReplacingMergeTree whose sorting key is the identity of what a row describes, and every
read uses FINAL (or max/argMax), so a redelivered batch changes no answer even before a
background merge:

    account_events   one row per AccountEvent, key (account_id, sequence); with its owner and
                     the principal that caused it (principal_id) since version 3
    account_latest   one row per account, the state after its newest event (version: sequence),
                     its owner since version 3
    account_tree     parent -> child edges, key (parent_account_id, account_id)
    sink_progress    per events partition, the next offset to read (max wins)
    audit            one row per AuditEvent (sinks/audit.py), key (kafka_partition, kafka_offset);
                     since version 4, with audit_progress (its sink's next offsets)

Applied migrations are never edited: a change is a new version.
"""

from __future__ import annotations

import re
from typing import Any

DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class SchemaError(RuntimeError):
    """The database was migrated by a newer version of this code."""


def check_database_name(database: str) -> str:
    """Database names are interpolated into SQL: only plain identifiers pass."""
    if not DATABASE_NAME.fullmatch(database):
        raise ValueError(f"{database!r} is not a plain ClickHouse identifier")
    return database


MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "account events and the sink's progress",
        [
            """
            CREATE TABLE IF NOT EXISTS {db}.account_events (
                account_id String,
                sequence UInt64,
                kind LowCardinality(String),
                amount Int64,
                held_change Int64,
                currency LowCardinality(String),
                balance Int64,
                held Int64,
                available Int64,
                pending_in Int64,
                pending_out Int64,
                lower_limit Int64,
                upper_limit Int64,
                status LowCardinality(String),
                parent_account_id Nullable(String),
                metadata Map(String, String),
                command_id String,
                dedup_id String,
                correlation_id Nullable(String),
                counterparty_account_id Nullable(String),
                code LowCardinality(Nullable(String)),
                occurred_at DateTime64(3, 'UTC'),
                kafka_partition UInt16,
                kafka_offset UInt64
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (account_id, sequence)
            """,
            """
            CREATE TABLE IF NOT EXISTS {db}.sink_progress (
                partition UInt16,
                next_offset UInt64,
                written_at DateTime64(3, 'UTC')
            )
            ENGINE = ReplacingMergeTree(written_at)
            ORDER BY partition
            """,
        ],
    ),
    (
        2,
        "latest state per account and the account hierarchy, written by the sink",
        [
            """
            CREATE TABLE IF NOT EXISTS {db}.account_latest (
                account_id String,
                sequence UInt64,
                currency LowCardinality(String),
                status LowCardinality(String),
                balance Int64,
                held Int64,
                available Int64,
                pending_in Int64,
                pending_out Int64,
                lower_limit Int64,
                upper_limit Int64,
                parent_account_id Nullable(String),
                updated_at DateTime64(3, 'UTC')
            )
            ENGINE = ReplacingMergeTree(sequence)
            ORDER BY account_id
            """,
            """
            CREATE TABLE IF NOT EXISTS {db}.account_tree (
                parent_account_id String,
                account_id String
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (parent_account_id, account_id)
            """,
            # Backfill from events written before version 2 (a no-op on a new database).
            """
            INSERT INTO {db}.account_latest
            SELECT account_id, max(sequence), argMax(currency, sequence), argMax(status, sequence),
                   argMax(balance, sequence), argMax(held, sequence), argMax(available, sequence),
                   argMax(pending_in, sequence), argMax(pending_out, sequence), argMax(lower_limit, sequence),
                   argMax(upper_limit, sequence), argMax(parent_account_id, sequence), max(occurred_at)
            FROM {db}.account_events
            GROUP BY account_id
            """,
            """
            INSERT INTO {db}.account_tree
            SELECT DISTINCT assumeNotNull(parent_account_id), account_id
            FROM {db}.account_events
            WHERE parent_account_id IS NOT NULL
            """,
        ],
    ),
    (
        3,
        "each event's account owner and the principal that caused it, each account's owner (before: '')",
        [
            """
            ALTER TABLE {db}.account_events
                ADD COLUMN IF NOT EXISTS owner String DEFAULT '',
                ADD COLUMN IF NOT EXISTS principal_id String DEFAULT ''
            """,
            """
            ALTER TABLE {db}.account_latest ADD COLUMN IF NOT EXISTS owner String DEFAULT ''
            """,
        ],
    ),
    (
        4,
        "the audit trail (sinks/audit.py) and its sink's progress",
        [
            """
            CREATE TABLE IF NOT EXISTS {db}.audit (
                principal_id String,
                roles Array(LowCardinality(String)),
                action LowCardinality(String),
                account_id String,
                command_id String,
                outcome LowCardinality(String),
                code LowCardinality(String),
                message String,
                source LowCardinality(String),
                occurred_at DateTime64(3, 'UTC'),
                kafka_partition UInt16,
                kafka_offset UInt64
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (kafka_partition, kafka_offset)
            """,
            """
            CREATE TABLE IF NOT EXISTS {db}.audit_progress (
                partition UInt16,
                next_offset UInt64,
                written_at DateTime64(3, 'UTC')
            )
            ENGINE = ReplacingMergeTree(written_at)
            ORDER BY partition
            """,
        ],
    ),
]
# Tables a rebuild of the views from the events topic leaves as they are: not made from events.
NOT_REBUILT_TABLES = frozenset({"audit", "audit_progress"})


def migrate(client: Any, database: str) -> list[int]:
    """Apply the migrations not applied yet, in order; returns the versions applied.

    Each statement is idempotent (IF NOT EXISTS, backfills into ReplacingMergeTree), so a
    crash before a version is recorded only repeats it at the next start."""
    check_database_name(database)
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, description String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations").result_rows}
    known = max(version for version, _, _ in MIGRATIONS)
    if done and max(done) > known:
        raise SchemaError(
            f"database {database} is at schema version {max(done)}, this code knows up to {known}: upgrade the code"
        )
    applied = []
    for version, description, statements in MIGRATIONS:
        if version in done:
            continue
        for statement in statements:
            client.command(statement.format(db=database))
        client.insert(
            f"{database}.schema_migrations", [[version, description]], column_names=["version", "description"]
        )
        applied.append(version)
    return applied


def check_schema(client: Any, database: str) -> int:
    """For a service that reads a store another process migrates: the store's schema
    version, which must be the one this code knows (older: the writer has not migrated
    it yet; newer: this code is too old)."""
    known = max(version for version, _, _ in MIGRATIONS)
    try:
        version = schema_version(client, database)
    except Exception as error:  # the table is missing: nothing migrated this database
        raise SchemaError(f"database {database} has no streamwallet schema ({error})") from error
    if version != known:
        raise SchemaError(f"database {database} is at schema version {version}, this code reads version {known}")
    return version


def schema_version(client: Any, database: str) -> int:
    rows = client.query(f"SELECT max(version) FROM {check_database_name(database)}.schema_migrations").result_rows
    return int(rows[0][0] or 0)


def tables(client: Any, database: str) -> list[str]:
    rows = client.query(
        "SELECT name FROM system.tables WHERE database = %(database)s ORDER BY name",
        parameters={"database": database},
    ).result_rows
    return [name for (name,) in rows]


def column_types(client: Any, database: str, table: str) -> dict[str, str]:
    """A table's columns and their ClickHouse types, as `system.columns` has them: given to
    an insert, they spare it the DESCRIBE that clickhouse-connect otherwise runs first."""
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = %(database)s AND table = %(table)s",
        parameters={"database": database, "table": table},
    ).result_rows
    return {name: type_name for name, type_name in rows}
