"""`streamwallet reconcile` and `streamwallet rebuild-views`.

Both go through the query service when it answers (it owns the embedded store), and
otherwise open the store in this process. Exit codes: 0 agreed / rebuilt, 1 differences
found / rebuild failed, 2 could not run.
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.error
from collections.abc import Mapping
from typing import Any

from foundation.http import request_json
from foundation.settings import Settings
from sinks.clickhouse import StoreInUseError, StoreLockedError, connect
from sinks.events import EventSink
from sinks.rebuild import FINISHED_PHASES, RebuildProgress, rebuild
from sinks.reconcile import Report, reconcile, render
from sinks.schema import migrate

SERVICE_PROBE_TIMEOUT_S = 2.0
SERVICE_REQUEST_TIMEOUT_S = 900.0
PROGRESS_EVERY_S = 1.0
EXIT_OK, EXIT_DIFFERENCES, EXIT_CANNOT_RUN = 0, 1, 2


def _request(method: str, url: str, timeout_s: float) -> tuple[int, Any]:
    return request_json(method, url, timeout_s=timeout_s)


def _service_answers(settings: Settings) -> bool:
    try:
        status, _ = _request("GET", f"{settings.query_url}/health", SERVICE_PROBE_TIMEOUT_S)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
    return status == 200


def _use_service(settings: Settings, via: str) -> bool | None:
    """True: through the service; False: in this process; None: cannot (message printed)."""
    if via == "direct":
        return False
    if _service_answers(settings):
        return True
    if via == "service":
        print(f"the query service does not answer at {settings.query_url}", file=sys.stderr)
        return None
    return False


def _open_store(settings: Settings) -> Any:
    try:
        client = connect(settings.clickhouse_dsn, session=True)  # the sink's temporary table
    except (StoreLockedError, StoreInUseError) as error:
        print(f"cannot open the store: {error}", file=sys.stderr)
        return None
    migrate(client, settings.clickhouse_database)
    return client


def reconcile_command(settings: Settings, *, via: str = "auto") -> int:
    use_service = _use_service(settings, via)
    if use_service is None:
        return EXIT_CANNOT_RUN
    if use_service:
        status, body = _request("GET", f"{settings.query_url}/reconcile", SERVICE_REQUEST_TIMEOUT_S)
        if status != 200:
            print(f"the query service could not reconcile ({status}): {body}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        report = Report.from_json(body)
    else:
        client = _open_store(settings)
        if client is None:
            return EXIT_CANNOT_RUN

        def reach(cut: Mapping[int, int]) -> None:
            # No service runs: bring the view to the cut with the sink, here.
            EventSink(settings, client).run(threading.Event(), until=cut)

        report = reconcile(settings, client, reach=reach)
    print(render(report))
    return EXIT_OK if report.ok else EXIT_DIFFERENCES


def rebuild_command(settings: Settings, *, via: str = "auto") -> int:
    use_service = _use_service(settings, via)
    if use_service is None:
        return EXIT_CANNOT_RUN
    if use_service:
        status, body = _request("POST", f"{settings.query_url}/admin/rebuild", SERVICE_PROBE_TIMEOUT_S * 5)
        if status not in (202, 409):
            print(f"the query service could not start a rebuild ({status}): {body}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        if status == 409:
            print("a rebuild is already running; following it")
        progress = RebuildProgress()
        while True:
            time.sleep(PROGRESS_EVERY_S)
            _, body = _request("GET", f"{settings.query_url}/admin/rebuild", SERVICE_PROBE_TIMEOUT_S * 5)
            progress = RebuildProgress(**body["rebuild"])
            print(progress.line(), flush=True)
            if progress.phase in FINISHED_PHASES:
                break
    else:
        client = _open_store(settings)
        if client is None:
            return EXIT_CANNOT_RUN
        last_print = 0.0

        def report(progress: RebuildProgress) -> None:
            nonlocal last_print
            if progress.phase in FINISHED_PHASES or time.monotonic() - last_print >= PROGRESS_EVERY_S:
                last_print = time.monotonic()
                print(progress.line(), flush=True)

        progress = rebuild(settings, client, report=report)
    if progress.phase != "done":
        print(f"rebuild {progress.phase}: {progress.error or ''}", file=sys.stderr)
        return EXIT_DIFFERENCES
    return EXIT_OK
