"""Rebuild every view from the events topic, from offset zero.

The events are replayed into a shadow database (`<database>__rebuild`, migrated from
scratch) by the same sink code that writes the live views, up to the topic's stable end
as it was when the rebuild began; then each table of the shadow is exchanged with the
live one (EXCHANGE TABLES: atomic per table) and the old tables are dropped. Readers see
the old views until the exchange and the complete new ones after it (the audit trail,
not made from events, stays as it is); a rebuild that fails or is stopped leaves the
live views as they were. The shadow's sink_progress comes
along, so the live sink continues right after the rebuilt range.

Run it with `streamwallet rebuild-views` (through the query service when it runs, which
pauses its sink only for the exchange; else in-process on the store).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka.admin import AdminClient

from foundation.clients import kafka_config
from foundation.offsets import last_stable_offsets
from foundation.settings import Settings
from sinks.events import EventSink, SinkMetrics
from sinks.schema import NOT_REBUILT_TABLES, check_database_name, migrate, tables

log = logging.getLogger(__name__)

SHADOW_SUFFIX = "__rebuild"
FINISHED_PHASES = ("done", "failed", "stopped")


@dataclasses.dataclass(slots=True)
class RebuildProgress:
    phase: str = "starting"  # starting, replaying, swapping, done, failed, stopped
    events_total: int = 0  # offsets below the cut, markers of transactions included
    offsets_done: int = 0
    events_written: int = 0
    seconds: float = 0.0
    events_per_second: float = 0.0
    eta_seconds: float | None = None
    error: str | None = None

    def line(self) -> str:
        share = 100.0 * self.offsets_done / self.events_total if self.events_total else 100.0
        eta = "" if self.eta_seconds is None else f", about {self.eta_seconds:.0f}s left"
        return (
            f"{self.phase}: {self.events_written:,} events written, {share:5.1f}% of {self.events_total:,} offsets, "
            f"{self.events_per_second:,.0f} events/s, {self.seconds:.1f}s{eta}"
        )


def rebuild(
    settings: Settings,
    client: Any,
    *,
    database: str | None = None,
    report: Callable[[RebuildProgress], None] = lambda progress: None,
    stop: threading.Event | None = None,
    exchange: Callable[[Callable[[], None]], None] = lambda swap: swap(),
) -> RebuildProgress:
    """Replay into the shadow, then `exchange(swap)`: the caller may pause its own sink
    around the swap. Returns the final progress (phase done, failed or stopped)."""
    database = check_database_name(database or settings.clickhouse_database)
    shadow = database + SHADOW_SUFFIX
    stop = stop or threading.Event()
    progress = RebuildProgress()
    started = time.monotonic()
    try:
        client.command(f"DROP DATABASE IF EXISTS {shadow} SYNC")
        migrate(client, shadow)
        topic = settings.topology().events.name
        admin = AdminClient({**kafka_config(settings)})
        partitions = sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)
        cut = last_stable_offsets(admin, topic, partitions)
        progress.events_total = sum(cut.values())
        progress.phase = "replaying"
        report(progress)

        def replayed(metrics: SinkMetrics) -> None:
            progress.seconds = time.monotonic() - started
            progress.events_written = metrics.events_written
            progress.offsets_done = sum(min(metrics.positions.get(p, 0), end) for p, end in cut.items())
            progress.events_per_second = progress.events_written / progress.seconds if progress.seconds else 0.0
            rate = progress.offsets_done / progress.seconds if progress.seconds else 0.0
            left = progress.events_total - progress.offsets_done
            progress.eta_seconds = left / rate if rate else None
            report(progress)

        sink = EventSink(settings, client, database=shadow, commit_offsets=False)
        sink.run(stop, until=cut, report=replayed)
        if stop.is_set():
            progress.phase = "stopped"
            client.command(f"DROP DATABASE IF EXISTS {shadow} SYNC")
            return progress
        progress.phase = "swapping"
        report(progress)
        exchange(lambda: swap_in(client, shadow=shadow, database=database))
        progress.phase = "done"
    except Exception as error:
        log.exception("rebuild failed")
        progress.phase = "failed"
        progress.error = f"{type(error).__name__}: {error}"
    finally:
        progress.seconds = time.monotonic() - started
        report(progress)
    return progress


def swap_in(client: Any, *, shadow: str, database: str) -> None:
    """Put the shadow's tables in place of the live ones and drop the old ones."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    live = set(tables(client, database))
    for table in tables(client, shadow):
        if table in NOT_REBUILT_TABLES and table in live:
            continue  # the audit trail is not made from the events: the live one stays
        if table in live:
            client.command(f"EXCHANGE TABLES {database}.{table} AND {shadow}.{table}")
        else:
            client.command(f"RENAME TABLE {shadow}.{table} TO {database}.{table}")
    client.command(f"DROP DATABASE IF EXISTS {shadow} SYNC")
