"""Metrics, logs and traces of the real processes: a worker, the query service and the
gateway as separate processes against a real broker, logging JSON and writing their
spans to files.

* one transfer across partitions, sent over HTTP with a known `traceparent`, is followed
  gateway → worker (debit) → worker (credit, other partition) → worker (settle) → sink,
  under one trace id, from the spans the three processes exported;
* each process's `/metrics` is parsed by prometheus-client's parser and checked by a real
  `promtool check metrics` (deploy/promtool.sh), and counts what was done;
* every metric the Grafana dashboards and the Prometheus rules read is exposed;
* the log level changes at run time, and a debug line then carries the command id, the
  account and the trace id.

One stack serves the whole module.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from foundation.observability import METRICS
from foundation.settings import Settings
from streamwallet.stack import Stack
from tests.conftest import fresh_settings
from tests.credentials import Credentials
from tests.promql_names import (
    SCRAPE_SERIES,
    dashboard_expressions,
    exposed_series,
    metric_names,
    recorded_names,
    rule_expressions,
)
from tests.promtool import built_promtool
from topologies import partition_for

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "helm" / "streamwallet" / "dashboards"
RULES = ROOT / "deploy" / "helm" / "streamwallet" / "rules" / "streamwallet.rules.yaml"
SPANS_TIMEOUT_S = 60.0
METRICS_TIMEOUT_S = 60.0
STANDARD_PREFIXES = ("process_", "python_")
LIBRDKAFKA_LINE = "%"


@dataclasses.dataclass
class Deployment:
    settings: Settings
    stack: Stack
    spans_dir: Path
    worker_url: str
    logs: Path

    @property
    def urls(self) -> dict[str, str]:
        return {"worker": self.worker_url, "query": self.settings.query_url, "gateway": self.settings.gateway_url}


# The gateway wants a credential; the worker and the query service answer loopback callers.
_CREDENTIALS: dict[str, dict[str, str]] = {}  # base URL -> headers, set by the fixture


def _authorization(url: str) -> dict[str, str]:
    return next((headers for base, headers in _CREDENTIALS.items() if url.startswith(base)), {})


def call(method: str, url: str, body: Any = None, *, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **_authorization(url), **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode()


def text(url: str) -> tuple[str, str]:
    """(body, Content-Type) of a GET."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=_authorization(url)), timeout=30) as response:
        return response.read().decode(), response.headers["Content-Type"]


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    run_dir = tmp_path_factory.mktemp("observability")
    spans_dir = run_dir / "spans"
    settings = fresh_settings(
        kafka_bootstrap,
        run_dir,
        prefix="o",
        log_format="json",
        trace_sample_ratio=0.0,  # only the requests that come with a sampled traceparent are traced
        trace_export_directory=str(spans_dir),
    )
    stack = Stack(settings, run_dir)
    worker = stack.worker(1)
    processes = [worker.start(), stack.query().start(), stack.gateway().start()]
    try:
        for process in processes:
            process.wait_ready()
        worker_url = f"http://{worker.settings.worker_web_host}:{worker.settings.worker_web_port}"
        _CREDENTIALS[settings.gateway_url] = Credentials(settings).headers("observer")
        yield Deployment(settings, stack, spans_dir, worker_url, run_dir / "logs")
    finally:
        stack.stop_all()


def accounts_on_two_partitions(settings: Settings) -> tuple[str, str]:
    source = f"src-{uuid.uuid4().hex[:8]}"
    for index in range(1000):
        destination = f"dst-{index}-{uuid.uuid4().hex[:6]}"
        if partition_for(destination, settings.partitions) != partition_for(source, settings.partitions):
            return source, destination
    raise AssertionError("no account on another partition")


def command(deployment: Deployment, body: dict[str, Any], *, traceparent: str | None = None) -> tuple[int, Any]:
    headers = {} if traceparent is None else {"traceparent": traceparent}
    return call("POST", f"{deployment.settings.gateway_url}/v1/commands", body, headers=headers)


def opened_with(deployment: Deployment, account_id: str, amount_minor: int) -> None:
    status, opened = command(
        deployment,
        # The test's principal ("observer") owns its accounts, so it may move money out of them.
        {"type": "OpenAccount", "dedup_id": "open", "account_id": account_id, "currency": "USD", "owner": "observer"},
    )
    assert status == 200, opened
    if amount_minor:
        status, deposited = command(
            deployment,
            {
                "type": "Deposit",
                "dedup_id": "deposit",
                "account_id": account_id,
                "amount_minor": amount_minor,
                "currency": "USD",
            },
        )
        assert status == 200, deposited


def spans_of(spans_dir: Path) -> list[dict[str, Any]]:
    spans = []
    for path in sorted(spans_dir.glob("*.jsonl")) if spans_dir.exists() else []:
        spans += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return spans


def wait_for_spans(spans_dir: Path, trace_id: str, done: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SPANS_TIMEOUT_S
    while True:
        spans = [span for span in spans_of(spans_dir) if span["trace_id"] == trace_id]
        if done(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def new_traceparent() -> tuple[str, str, str]:
    """(traceparent, trace id, the caller's span id), sampled."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def test_one_transfer_is_followed_across_the_processes_under_one_trace_id(deployment: Deployment) -> None:
    settings = deployment.settings
    source, destination = accounts_on_two_partitions(settings)
    opened_with(deployment, source, 10_000)
    opened_with(deployment, destination, 0)
    header, trace_id, caller_span = new_traceparent()
    transfer_id = f"transfer-{uuid.uuid4().hex[:8]}"
    status, result = command(
        deployment,
        {
            "type": "Transfer",
            "command_id": transfer_id,
            "dedup_id": transfer_id,
            "from_account_id": source,
            "to_account_id": destination,
            "amount_minor": 2_500,
            "currency": "USD",
        },
        traceparent=header,
    )
    assert status == 200 and result["status"] == "ACCEPTED", result

    def complete(spans: list[dict[str, Any]]) -> bool:
        # Every process exports its spans in batches of its own: wait for the gateway's too.
        names = [span["name"] for span in spans if span["status"] != "ERROR"]
        gateway = [span for span in spans if span["service"] == "streamwallet-gateway"]
        return bool(gateway) and {"decide SettleLeg"} <= set(names) and names.count("sink write event") >= 3

    spans = wait_for_spans(deployment.spans_dir, trace_id, complete)
    by_id = {span["span_id"]: span for span in spans}
    (request,) = [span for span in spans if span["service"] == "streamwallet-gateway"]
    assert request["name"] == "POST /v1/commands" and request["parent_span_id"] == caller_span, request
    assert request["attributes"]["http.response.status_code"] == 200

    def only(name: str) -> dict[str, Any]:
        # A transaction aborted under load (its batch decided again) leaves its spans ended
        # with status ERROR; the committed decision is the one span without it.
        found = [span for span in spans if span["name"] == name and span["status"] != "ERROR"]
        assert len(found) == 1, (name, spans)
        return found[0]

    debit, credit, settle = only("decide Transfer"), only("decide CreditLeg"), only("decide SettleLeg")
    assert debit["parent_span_id"] == request["span_id"]
    assert credit["parent_span_id"] == debit["span_id"]
    assert settle["parent_span_id"] == credit["span_id"]
    source_partition = str(partition_for(source, settings.partitions))
    destination_partition = str(partition_for(destination, settings.partitions))
    assert debit["attributes"]["messaging.destination.partition.id"] == source_partition
    assert debit["attributes"]["streamwallet.command_id"] == transfer_id
    assert credit["attributes"]["messaging.destination.partition.id"] == destination_partition
    assert credit["attributes"]["streamwallet.result_codes"] == ["OK"]  # the final result is the credit's
    assert settle["attributes"]["messaging.destination.partition.id"] == source_partition
    assert {span["service"] for span in (debit, credit, settle)} == {"streamwallet-worker"}
    # The sink wrote each event of the flow in the same trace: the debit's (the source's
    # pending_out), the credit's (the destination's balance), the settlement's (the source's).
    written = {
        (span["attributes"]["streamwallet.account_id"], by_id[span["parent_span_id"]]["name"])
        for span in spans
        if span["name"] == "sink write event"
    }
    assert written == {
        (source, "decide Transfer"),
        (destination, "decide CreditLeg"),
        (source, "decide SettleLeg"),
    }, written
    assert {span["trace_id"] for span in spans} == {trace_id}
    # Sampling: nothing else was traced (the ratio is 0 and no other request was sampled).
    assert {span["trace_id"] for span in spans_of(deployment.spans_dir)} <= {trace_id} | traced_elsewhere


traced_elsewhere: set[str] = set()  # trace ids the other tests of this module sent sampled


def dead_letter(settings: Settings) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    producer.produce(settings.topology().commands.name, b"not avro", b"garbage")
    assert producer.flush(30) == 0


def scrape(url: str) -> tuple[str, dict[str, Any]]:
    """The exposition at url/metrics, and its families by name, parsed by prometheus-client."""
    body, content_type = text(f"{url}/metrics")
    assert content_type.startswith("text/plain"), content_type
    families = {family.name: family for family in text_string_to_metric_families(body)}
    for name, family in families.items():
        assert family.documentation, f"{name} has no HELP"
        assert name in METRICS or name.startswith(STANDARD_PREFIXES), f"{name} is not listed in METRICS"
    return body, families


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    """The sum of a family's samples named `name` whose labels include `labels`."""
    family_name = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    family = families[family_name]
    return sum(
        float(sample.value)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(key) == wanted for key, wanted in labels.items())
    )


def eventually(check: Any, timeout_s: float = METRICS_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module")
def promtool() -> Path:
    """A real promtool, built by deploy/promtool.sh (cached in .cache/bin) if it is missing."""
    return built_promtool()


# promtool before the deployment: a build still running is waited for with the CPU to itself.
def test_every_process_serves_prometheus_metrics_that_count_what_happened(
    promtool: Path, deployment: Deployment
) -> None:
    settings, urls = deployment.settings, deployment.urls
    account = f"metrics-{uuid.uuid4().hex[:8]}"
    opened_with(deployment, account, 1_000)
    status, refused = command(
        deployment,
        {"type": "Withdraw", "dedup_id": "too-much", "account_id": account, "amount_minor": 5_000, "currency": "USD"},
    )
    assert status == 409 and refused["code"] == "INSUFFICIENT_FUNDS", refused
    hold = {"type": "PlaceHold", "dedup_id": "hold", "account_id": account, "hold_id": "h1"}
    status, placed = command(deployment, {**hold, "amount_minor": 300, "currency": "USD", "ttl_ms": 3_600_000})
    assert status == 200, placed
    dead_letter(settings)
    assert call("GET", f"{settings.gateway_url}/v1/accounts/{account}?min_seq=3")[0] == 200
    assert call("GET", f"{settings.gateway_url}/v1/accounts/no-such-{uuid.uuid4().hex}")[0] == 404
    assert call("POST", f"{settings.query_url}/?query=SELECT+count()+FROM+account_events")[0] == 200
    assert call("POST", f"{settings.query_url}/?query=DROP+TABLE+account_events")[0] >= 400

    def worker_counted() -> dict[str, Any]:
        _, families = scrape(urls["worker"])
        assert value(families, "streamwallet_worker_commands_total", type="Deposit", code="OK") >= 1
        assert value(families, "streamwallet_worker_commands_total", type="Withdraw", code="INSUFFICIENT_FUNDS") >= 1
        assert value(families, "streamwallet_worker_commands_total", type="PlaceHold", code="OK") >= 1
        assert value(families, "streamwallet_worker_dead_letters_total", reason="UNDECODABLE") >= 1
        assert value(families, "streamwallet_worker_command_latency_seconds_count", flow="single") >= 4
        assert value(families, "streamwallet_worker_transactions_total") >= 1
        for phase in ("decide", "send", "commit"):  # where each turn's time went
            assert value(families, f"streamwallet_worker_transaction_{phase}_seconds_count") >= 1, phase
        assert value(families, "streamwallet_worker_owned_partitions") == settings.partitions
        partition = str(partition_for(account, settings.partitions))
        assert value(families, "streamwallet_worker_holds_open", partition=partition) == 1
        assert value(families, "streamwallet_worker_transfers_in_flight") == 0
        # librdkafka's statistics come every few seconds: a lag for each owned input partition
        lags = [s for s in families["streamwallet_worker_consumer_lag_messages"].samples]
        assert len(lags) == 2 * settings.partitions, lags
        return families

    worker = eventually(worker_counted)
    assert value(worker, "streamwallet_worker_rocksdb_memory_bytes", part="block_cache") > 0

    def query_counted() -> dict[str, Any]:
        _, families = scrape(urls["query"])
        assert value(families, "streamwallet_sink_events_written_total") >= 4
        assert value(families, "streamwallet_sink_batch_events_count") >= 1
        assert len(families["streamwallet_sink_lag_events"].samples) == settings.partitions
        assert value(families, "streamwallet_sql_queries_total", outcome="ok") >= 1
        assert value(families, "streamwallet_sql_queries_total", outcome="refused") >= 1
        assert value(families, "streamwallet_query_requests_total", route="/accounts/{account_id}") >= 1
        return families

    query = eventually(query_counted)
    _, gateway = scrape(urls["gateway"])
    assert value(gateway, "streamwallet_gateway_requests_total", route="/v1/commands", method="POST", status="200") >= 3
    assert value(gateway, "streamwallet_gateway_requests_total", route="/v1/commands", status="409") >= 1
    assert value(gateway, "streamwallet_gateway_requests_total", route="/v1/accounts/{account_id}", status="404") >= 1
    assert value(gateway, "streamwallet_gateway_request_duration_seconds_count", route="/v1/commands") >= 4
    assert value(gateway, "streamwallet_gateway_pending_commands") == 0
    # Bounded labels: route templates, never a raw path.
    for families in (gateway, query):
        routes = {s.labels["route"] for family in families.values() for s in family.samples if "route" in s.labels}
        assert not any(account in route or "no-such" in route for route in routes), routes

    for name, url in urls.items():
        body, _ = text(f"{url}/metrics")
        checked = subprocess.run(
            [str(promtool), "check", "metrics"], input=body, capture_output=True, text=True, timeout=60, check=False
        )
        assert checked.returncode == 0, f"{name}: {checked.stdout}{checked.stderr}"


def test_every_metric_the_dashboards_and_the_rules_read_is_exposed(deployment: Deployment) -> None:
    """Every metric name in every dashboard query (panels and variables) and every rule
    expression is a series one of the real processes exposes after some work: a renamed or
    removed metric fails here. Names the rules record, and the series Prometheus makes itself
    (`up`), are the only others allowed."""
    settings, urls = deployment.settings, deployment.urls
    account = f"dashboards-{uuid.uuid4().hex[:8]}"
    opened_with(deployment, account, 500)
    dead_letter(settings)
    status, report = call("GET", f"{settings.query_url}/reconcile")
    assert status == 200 and report["ok"] is True, report

    def exposed() -> set[str]:
        names: set[str] = set()
        for url in urls.values():
            names |= exposed_series(scrape(url)[1].values())
        assert "streamwallet_reconcile_differences" in names and "streamwallet_worker_consumer_lag_messages" in names
        return names

    series = eventually(exposed)
    allowed = series | SCRAPE_SERIES | recorded_names(RULES)
    queries = [query for path in sorted(DASHBOARDS.glob("*.json")) for query in dashboard_expressions(path)]
    queries += list(rule_expressions(RULES))
    assert len(queries) >= 40 and {path.name for path in DASHBOARDS.glob("*.json")} == {
        "streamwallet-overview.json",
        "streamwallet-worker.json",
    }
    missing = {
        where: sorted(metric_names(expression) - allowed)
        for where, expression in queries
        if metric_names(expression) - allowed
    }
    assert missing == {}, f"metrics no process exposes: {missing}"
    for where, expression in queries:
        assert metric_names(expression), f"{where}: no metric found in {expression!r}"
    # The check can fail: a renamed metric is caught.
    assert metric_names("rate(streamwallet_worker_command_total[5m])") - allowed == {
        "streamwallet_worker_command_total"
    }


def test_the_json_metrics_moved_to_metrics_json(deployment: Deployment) -> None:
    status, worker = call("GET", f"{deployment.worker_url}/metrics.json")
    assert status == 200 and worker["worker_id"] == "worker-1" and "rocksdb" in worker, worker
    status, query = call("GET", f"{deployment.settings.query_url}/metrics.json")
    assert status == 200 and "sink" in query, query


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_the_log_level_changes_at_run_time_and_debug_lines_carry_the_command_and_trace(
    deployment: Deployment,
) -> None:
    urls = deployment.urls
    for name, url in urls.items():
        assert call("GET", f"{url}/admin/log-level") == (200, {"level": "INFO"}), name
        status, refused = call("POST", f"{url}/admin/log-level", {"level": "verbose"})
        assert status == 400 and refused["code"] == "BAD_LOG_LEVEL", (name, refused)
        assert call("POST", f"{url}/admin/log-level", "debug")[0] == 400, name
        assert call("POST", f"{url}/admin/log-level", {"level": "debug"}) == (
            200,
            {"level": "DEBUG", "previous": "INFO"},
        ), name
    try:
        account = f"logged-{uuid.uuid4().hex[:8]}"
        header, trace_id, _ = new_traceparent()
        traced_elsewhere.add(trace_id)
        command_id = f"deposit-{uuid.uuid4().hex[:8]}"
        opened_with(deployment, account, 0)
        status, result = command(
            deployment,
            {
                "type": "Deposit",
                "command_id": command_id,
                "dedup_id": command_id,
                "account_id": account,
                "amount_minor": 100,
                "currency": "USD",
            },
            traceparent=header,
        )
        assert status == 200, result
        logs = deployment.logs

        def logged() -> None:
            decided = [
                line
                for line in json_lines(logs / "worker-1.log")
                if line.get("level") == "DEBUG" and line.get("command_id") == command_id
            ]
            assert decided and decided[0]["trace_id"] == trace_id, decided
            assert decided[0]["account_id"] == account and decided[0]["service"] == "streamwallet-worker"
            answered = [line for line in json_lines(logs / "gateway.log") if line.get("trace_id") == trace_id]
            assert answered and answered[0]["level"] == "DEBUG", answered

        eventually(logged, timeout_s=30)
        # The gateway and the query service log nothing but JSON, except librdkafka's own lines
        # (`%<level>|...`), which it writes to stderr itself unless a client is given a logger.
        for name in ("gateway.log", "query.log"):
            lines = [line for line in (logs / name).read_text().splitlines() if line.strip()]
            others = [line for line in lines if not line.startswith(("{", LIBRDKAFKA_LINE))]
            assert not others, others
    finally:
        for url in urls.values():
            assert call("POST", f"{url}/admin/log-level", {"level": "info"})[0] == 200
