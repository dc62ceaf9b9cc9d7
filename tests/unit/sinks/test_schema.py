"""Migrations (versioned, idempotent, backfilling, refusing a newer schema) and the
rebuild's table exchange."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bench.event_workload import generate
from codec import Codec
from sinks import schema, views
from sinks.events import EVENT_COLUMNS
from sinks.rebuild import SHADOW_SUFFIX, swap_in
from tests.unit.sinks.support import messages, sink, write_in_batches


def test_migrations_apply_once_and_in_order(clickhouse: Any, database: str) -> None:
    assert schema.schema_version(clickhouse, database) == max(version for version, _, _ in schema.MIGRATIONS)
    assert schema.migrate(clickhouse, database) == []
    assert {"account_events", "account_latest", "account_tree", "sink_progress", "schema_migrations"} <= set(
        schema.tables(clickhouse, database)
    )


def test_version_2_backfills_what_version_1_holds(clickhouse: Any) -> None:
    database = f"old_{uuid.uuid4().hex[:10]}"
    version_1 = schema.MIGRATIONS[:1]
    try:
        original = list(schema.MIGRATIONS)
        schema.MIGRATIONS[:] = version_1
        try:
            schema.migrate(clickhouse, database)
        finally:
            schema.MIGRATIONS[:] = original
        codec = Codec()
        events = generate(2, accounts=12, events=300)
        batch = messages(events, codec)
        target = sink(clickhouse, database, codec)
        # Version 1 had only the events table: write just that, as the old sink did.
        # (without the columns version 3 added: the owner and the principal)
        old_columns = EVENT_COLUMNS[: EVENT_COLUMNS.index("owner")]
        rows = [
            target.decoder.row(message.value() or b"", message.partition(), message.offset())[: len(old_columns)]
            for message in batch
        ]
        clickhouse.insert(f"{database}.account_events", rows, column_names=old_columns)
        assert schema.migrate(clickhouse, database) == [2, 3, 4]
        assert views.latest_table_mismatches(clickhouse, database) == []
        newest = {event.account_id: event for event in events}
        for account_id, event in newest.items():
            record = views.balance(clickhouse, database, account_id)
            assert record is not None and record["sequence"] == event.sequence and record["balance"] == event.balance
        parented = {event.account_id for event in events if event.parent_account_id}
        rows = clickhouse.query(f"SELECT account_id FROM {database}.account_tree FINAL").result_rows
        assert {account_id for (account_id,) in rows} == parented
    finally:
        clickhouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")


def test_a_newer_schema_is_refused(clickhouse: Any, database: str) -> None:
    clickhouse.insert(
        f"{database}.schema_migrations", [[99, "from the future"]], column_names=["version", "description"]
    )
    with pytest.raises(schema.SchemaError, match="version 99"):
        schema.migrate(clickhouse, database)


def test_database_names_are_plain_identifiers() -> None:
    with pytest.raises(ValueError):
        schema.check_database_name("x; DROP TABLE y")
    assert schema.check_database_name("streamwallet_2") == "streamwallet_2"


def test_swap_in_replaces_every_table(clickhouse: Any, database: str) -> None:
    codec = Codec()
    events = generate(4, accounts=8, events=200)
    write_in_batches(sink(clickhouse, database, codec), messages(events, codec)[:50], 50)
    shadow = database + SHADOW_SUFFIX
    schema.migrate(clickhouse, shadow)
    write_in_batches(sink(clickhouse, shadow, codec), messages(events, codec), 64)
    swap_in(clickhouse, shadow=shadow, database=database)
    assert views.event_count(clickhouse, database) == len(events)
    assert shadow not in {name for (name,) in clickhouse.query("SHOW DATABASES").result_rows}
