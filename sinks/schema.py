"""The query side's tables, created by versioned migrations applied at start.

DDL is kept to what current ClickHouse servers and chDB both accept. Re-inserted
events collapse: ReplacingMergeTree keyed by (account_id, sequence), and every view
reads the latest state per account with argMax over the sequence, so a redelivered
batch changes no answer even before a merge.
"""

from __future__ import annotations

from typing import Any

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
]


def migrate(client: Any, database: str) -> list[int]:
    """Apply the migrations not applied yet, in order; returns the versions applied."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, description String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations").result_rows}
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
