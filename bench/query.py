"""The query side with 1,000,000 events: sink throughput into chDB, query latency over
HTTP, read-your-writes latency, and a full rebuild from offset zero.

    python -m bench.query [--source ledger|topic] [--events 1000000] [--accounts 10000]
                          [--partitions 8] [--queries 2000] [--workers 2] [--ryw-rate 1000]

1. fills a fresh events topic (`bench/query_sources.py`): with `--source ledger` (the
   default) ledger workers decide a mix of deposits, withdrawals and transfers within and
   across partitions, and are stopped before the sink starts; with `--source topic` the
   test suite's seeded generator (a hierarchy, holds, batches too) writes the events
   straight to the topic, without transactions;
2. starts the query service (its own process, a fresh chDB folder) and times its sink
   from start until the view holds every event;
3. times queries over HTTP, one client, sequentially: the balance, a 100-event history
   page (random account, random cursor), the balance as of a time and as of a sequence,
   per-currency totals and a hierarchy roll-up;
4. times read-your-writes (`bench/read_your_writes.py`): one event produced, then read at
   once with min_seq; alone, then while `--ryw-rate` other events a second arrive;
5. stops the service and times `streamwallet rebuild-views --via direct` (every view from
   offset zero into a shadow database, then the exchange).

Uses the Kafka at STREAMWALLET_BOOTSTRAP_SERVERS, or starts the local one. No ClickHouse
server is installable on this machine (Debian's 18.16 is too old for clickhouse-connect),
so only the embedded backend is measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import query_sources
from bench.figures import latency_summary
from bench.processes import cpu_seconds, peak_rss_mb
from bench.read_your_writes import read_your_writes
from bench.run_topics import run_topics
from deploy.local import kafka
from foundation.settings import Settings
from streamwallet.stack import Stack

CATCH_UP_TIMEOUT_S = 1800.0
READ_YOUR_WRITES_RUNS = 1_000  # p99 needs 1,000 samples (bench/figures.py)
TOTALS_RUNS = 20  # the median needs 20


class QueryFailed(Exception):
    """A query the benchmark times did not answer as it must: the run has no figures."""


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def time_queries(label: str, count: int, make_url: Callable[[], str]) -> dict[str, Any]:
    latencies = []
    for _ in range(count):
        url = make_url()
        started = time.perf_counter()
        status, body = get(url)
        latencies.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise QueryFailed(f"{url}: HTTP {status} {body}")
    return {"query": label, **latency_summary(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument(
        "--source", choices=("ledger", "topic"), default="ledger", help="who writes the events (see above)"
    )
    parser.add_argument("--workers", type=int, default=2, help="ledger workers deciding the events (--source ledger)")
    parser.add_argument(
        "--ryw-rate", type=float, default=1000.0, help="other events a second while read-your-writes is timed again"
    )
    args = parser.parse_args()
    base = Settings.from_environment()
    if "STREAMWALLET_BOOTSTRAP_SERVERS" not in os.environ:
        kafka.start(name="dev", base_port=int(base.bootstrap_servers.rsplit(":", 1)[1]))
    run_dir = Path(tempfile.mkdtemp(prefix="streamwallet-bench-query-"))
    settings = dataclasses.replace(
        base,
        topic_prefix=f"benchq{uuid.uuid4().hex[:6]}",
        partitions=args.partitions,
        clickhouse_dsn=f"chdb://{run_dir / 'clickhouse'}",
        query_port=16181,
        query_url="http://127.0.0.1:16181",
    )
    with run_topics(settings):  # deleted when the run ends (bench/run_topics.py)
        figures = measure(settings, args, run_dir)
    print(json.dumps(figures, indent=2))


def measure(settings: Settings, args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Steps 1-5 of the module's note, on the run's own topics."""
    rng = random.Random(args.seed)
    figures: dict[str, Any] = {
        "source": args.source,
        "events": args.events,
        "accounts": args.accounts,
        "partitions": args.partitions,
    }

    print(f"producing {args.events:,} events over {args.accounts:,} accounts ({args.source}) ...", flush=True)
    if args.source == "ledger":
        loaded = query_sources.through_ledger(
            settings, run_dir, events=args.events, accounts=args.accounts, workers=args.workers, seed=args.seed
        )
    else:
        loaded = query_sources.straight_to_topic(settings, events=args.events, accounts=args.accounts, seed=args.seed)
    figures["produced"] = {"events": loaded.events, "seconds": round(loaded.seconds, 1)}

    stack = Stack(settings, run_dir)
    query = stack.query()
    started = time.monotonic()
    query.start()
    try:
        query.wait_ready()
        first_seen: tuple[float, int] | None = None  # (when, events): the sink's first batches, past start-up
        while True:
            _, metrics = get(f"{settings.query_url}/metrics.json")
            sink = metrics["sink"]
            if first_seen is None and sink.get("events_written", 0) > 0:
                first_seen = (time.monotonic(), sink["events_written"])
            if sink.get("events_written", 0) >= loaded.events and sink.get("lag_events", 1) == 0:
                break
            if time.monotonic() - started > CATCH_UP_TIMEOUT_S:
                raise TimeoutError(f"the sink did not catch up: {metrics}")
            time.sleep(0.25)
        seconds = time.monotonic() - started
        pid = query.process.pid if query.process is not None else 0
        figures["sink"] = {
            "events": sink["events_written"],
            "seconds_from_process_start": round(seconds, 1),
            "events_per_s": round(sink["events_written"] / seconds),
            # From the first poll that saw events written (every 0.25 s) to the end: the sink
            # alone, without the service's start-up (imports, chDB, migrations, Kafka metadata).
            "events_per_s_once_writing": (
                round((sink["events_written"] - first_seen[1]) / (started + seconds - first_seen[0]))
                if first_seen is not None and sink["events_written"] > first_seen[1]
                else None
            ),
            "query_service_cpu_s": round(cpu_seconds(pid), 1),
            "query_service_peak_rss_mib": round(peak_rss_mb(pid)),
            "batches": sink["batches"],
        }
        print(f"sink: {figures['sink']}", flush=True)

        accounts = list(loaded.accounts)
        url = settings.query_url

        def history_page() -> str:
            account_id = rng.choice(accounts)
            last = loaded.accounts[account_id][0]
            return f"{url}/accounts/{account_id}/history?limit=100&before={rng.randint(2, last + 1)}"

        def as_of_time() -> str:
            account_id = rng.choice(accounts)
            _, first, last = loaded.accounts[account_id]
            return f"{url}/accounts/{account_id}/as-of?at={rng.randint(first, last)}"

        def as_of_sequence() -> str:
            account_id = rng.choice(accounts)
            return f"{url}/accounts/{account_id}/as-of?sequence={rng.randint(1, loaded.accounts[account_id][0])}"

        figures["queries"] = [
            time_queries("balance", args.queries, lambda: f"{url}/accounts/{rng.choice(accounts)}"),
            time_queries("history page, 100 events", args.queries, history_page),
            time_queries("balance as of a time", args.queries, as_of_time),
            time_queries("balance as of a sequence", args.queries, as_of_sequence),
            time_queries(
                "daily turnover of an account",
                args.queries // 10,
                lambda: f"{url}/accounts/{rng.choice(accounts)}/turnover",
            ),
            time_queries("hierarchy roll-up", 50, lambda: f"{url}/accounts/{rng.choice(loaded.roots)}/rollup"),
            time_queries("per-currency totals (all events)", TOTALS_RUNS, lambda: f"{url}/totals"),
            _with_read_counts(
                settings,
                lambda: read_your_writes(settings, get, list(loaded.accounts), READ_YOUR_WRITES_RUNS, rng),
            ),
            _with_read_counts(
                settings,
                lambda: read_your_writes(
                    settings, get, list(loaded.accounts), READ_YOUR_WRITES_RUNS, rng, background_rate=args.ryw_rate
                ),
            ),
        ]
        for row in figures["queries"]:
            print(f"  {row}", flush=True)
    finally:
        stack.stop_all()

    print("rebuilding every view from offset zero (streamwallet rebuild-views --via direct) ...", flush=True)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "streamwallet.cli", "rebuild-views", "--via", "direct"],
        env={**os.environ, **settings.environment()},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    lines = result.stdout.strip().splitlines()
    figures["rebuild"] = {
        "exit": result.returncode,
        "seconds_with_process_start": round(seconds, 1),
        "events_per_s": round(loaded.events / seconds),
        "last_lines": lines[-2:],
    }
    return figures


def _with_read_counts(settings: Settings, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A read-your-writes figure with what the service says of its reads meanwhile: how many
    found the view behind and waited, how many were answered with a row of the sink's
    (sinks/service.py) rather than a look in the view, and how many of those before the view
    held the row (the row the sink received)."""
    _, before = get(f"{settings.query_url}/metrics.json")
    row = run()
    _, after = get(f"{settings.query_url}/metrics.json")
    for name in ("reads_waited", "reads_answered_by_sink", "reads_answered_on_receipt"):
        row[name] = after.get(name, 0) - before.get(name, 0)
    return row


if __name__ == "__main__":
    main()
