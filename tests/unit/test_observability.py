"""foundation/observability.py and the worker's hooks (streams/telemetry.py) without a
broker: log lines, the run-time log level, trace context in and out of Kafka headers, the
worker's sampling decisions and what counts only once a transaction commits."""

from __future__ import annotations

import http.server
import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from foundation import observability
from foundation.observability import (
    COMMAND_APPENDED_HEADER,
    JsonFormatter,
    TextFormatter,
    current_trace_headers,
    log_level_answer,
    metrics_payload,
    parse_traceparent,
    set_log_level,
    tracer_provider,
)
from foundation.settings import Settings
from ledger import legs
from ledger.commands import Deposit, OpenAccount, Transfer
from ledger.events import Position
from ledger.shard import Outcome, Shard, ShardConfig
from ledger.state import InMemoryStore
from streams.processor import ProcessorMetrics
from streams.telemetry import LatencyHistogram, WorkerTelemetry, partition_lags
from tests.principals import TESTER

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
SAMPLED = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
UNSAMPLED = f"00-{TRACE_ID}-{PARENT_SPAN}-00"
COMMANDS_TOPIC = "t.commands"
LEGS_TOPIC = "t.legs"


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, restored afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    root.setLevel(level)
    root.handlers[:] = handlers


def record(message: str, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("streams.processor", logging.WARNING, __file__, 1, message, None, None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


# -- logs ----------------------------------------------------------------------------------------


def test_a_json_line_carries_the_command_the_account_and_the_trace() -> None:
    line = json.loads(JsonFormatter(service="streamwallet-worker").format(record("dead letter", command_id="c1")))
    assert line["message"] == "dead letter" and line["level"] == "WARNING" and line["logger"] == "streams.processor"
    assert line["command_id"] == "c1" and line["service"] == "streamwallet-worker"
    assert line["time"].endswith("+00:00") and "trace_id" not in line  # no span, no trace id
    tracer = tracer_provider(Settings(), service="test").get_tracer("test")
    parent = observability.remote_parent(parse_traceparent(SAMPLED))  # type: ignore[arg-type]
    with tracer.start_as_current_span("request", context=parent):
        inside = json.loads(JsonFormatter().format(record("answered", account_id="alice")))
    assert inside["trace_id"] == TRACE_ID and inside["account_id"] == "alice" and len(inside["span_id"]) == 16


def test_a_json_line_carries_the_exception_and_survives_values_json_cannot_take() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        import sys

        failed = record("failed", partition=3, odd=object())
        failed.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(failed))
    assert "ValueError: broken" in line["exception"] and line["partition"] == 3 and "object" in line["odd"]


def test_a_text_line_appends_the_context_it_knows() -> None:
    text = TextFormatter().format(record("decided", command_id="c1", trace_id=TRACE_ID))
    assert text.endswith(f"streams.processor: decided [command_id=c1 trace_id={TRACE_ID}]")
    assert TextFormatter().format(record("plain")).endswith("streams.processor: plain")


def test_an_unknown_log_format_or_level_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="text, json"):
        observability.logging_config("xml", level="info", service="s")
    with pytest.raises(ValueError, match="DEBUG, INFO"):
        observability.checked_level("loud")


def test_the_level_changes_at_run_time_on_the_root_logger_and_its_handlers(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    observability.configure_logging(log_format="json", level="info", service="s")
    root_logger.handlers[0].setLevel(logging.INFO)  # as Faust's worker leaves its handler
    root_logger.handlers[0].stream = stream  # type: ignore[attr-defined]
    logging.getLogger("streams.telemetry").debug("hidden")
    assert set_log_level("debug") == ("INFO", "DEBUG")
    logging.getLogger("streams.telemetry").debug("shown")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["shown"]


def test_the_log_level_endpoint_answers_refuses_bad_input_and_strangers(root_logger: logging.Logger) -> None:
    root_logger.setLevel(logging.INFO)
    assert log_level_answer("GET", None, peer="127.0.0.1") == (200, {"level": "INFO"})
    assert log_level_answer("POST", {"level": "warn"}, peer="::1") == (200, {"level": "WARNING", "previous": "INFO"})
    for body in (None, "debug", {"level": 10}, {"level": "verbose"}, [1]):
        status, answer = log_level_answer("POST", body, peer="127.0.0.1")
        assert (status, answer["code"]) == (400, "BAD_LOG_LEVEL"), body
    for peer in ("10.0.0.7", "192.168.1.2", None, "", "not-an-address"):
        assert log_level_answer("POST", {"level": "debug"}, peer=peer)[0] == 403, peer
    assert logging.getLogger().level == logging.WARNING


# -- trace context -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "valid", "sampled"),
    [
        (SAMPLED, True, True),
        (UNSAMPLED, True, False),
        (f"01-{TRACE_ID}-{PARENT_SPAN}-01-future", True, True),  # a later version may add fields
        (f"00-{TRACE_ID}-{PARENT_SPAN}-01-extra", False, False),  # version 00 may not
        (f"ff-{TRACE_ID}-{PARENT_SPAN}-01", False, False),
        (f"00-{'0' * 32}-{PARENT_SPAN}-01", False, False),
        (f"00-{TRACE_ID}-{'0' * 16}-01", False, False),
        (f"00-{TRACE_ID[:-1]}-{PARENT_SPAN}-01", False, False),
        (f"00-{TRACE_ID}-{PARENT_SPAN}-zz", False, False),
        ("garbage", False, False),
        (b"\xff\xfe", False, False),
        (None, False, False),
    ],
)
def test_traceparent_parsing(header: Any, valid: bool, sampled: bool) -> None:
    context = parse_traceparent(header)
    assert (context is not None) == valid
    if context is not None:
        assert format(context.trace_id, "032x") == TRACE_ID and context.trace_flags.sampled == sampled
        assert observability.traceparent(context).decode().startswith(f"00-{TRACE_ID}-{PARENT_SPAN}-")


def test_records_produced_inside_a_span_carry_its_traceparent() -> None:
    assert current_trace_headers() is None
    for ratio, sampled in ((1.0, True), (0.0, False)):
        tracer = tracer_provider(Settings(trace_sample_ratio=ratio), service="test").get_tracer("test")
        with tracer.start_as_current_span("request") as span:
            ((name, value),) = current_trace_headers() or []
        context = span.get_span_context()
        assert name == "traceparent" and value.startswith(
            f"00-{context.trace_id:032x}-{context.span_id:016x}-".encode()
        )
        parsed = parse_traceparent(value)
        assert parsed is not None and parsed.trace_flags.sampled == sampled  # an unsampled trace still travels


def test_spans_are_written_as_json_lines_to_the_export_directory(tmp_path: Path) -> None:
    settings = Settings(trace_export_directory=str(tmp_path / "spans"), worker_id="w1", trace_sample_ratio=1.0)
    provider = tracer_provider(settings, service="streamwallet-test")
    with provider.get_tracer("test").start_as_current_span("work", attributes={"streamwallet.account_id": "a"}):
        pass
    provider.force_flush()
    (path,) = (tmp_path / "spans").glob("streamwallet-test-w1-*.jsonl")
    (span,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert span["name"] == "work" and span["service"] == "streamwallet-test" and span["parent_span_id"] is None
    assert span["attributes"] == {"streamwallet.account_id": "a"} and span["end_ns"] >= span["start_ns"]
    provider.shutdown()


def test_spans_reach_an_otlp_http_collector_when_one_is_configured() -> None:
    """The OTLP/HTTP exporter against a receiver that decodes what a collector would: the
    protobuf ExportTraceServiceRequest POSTed to /v1/traces."""
    received: list[tuple[str, str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        settings = Settings(otlp_traces_endpoint=endpoint, trace_sample_ratio=1.0, worker_id="w7")
        provider = tracer_provider(settings, service="streamwallet-gateway")
        with provider.get_tracer("test").start_as_current_span("POST /v1/commands"):
            pass
        assert provider.force_flush(10_000)
        provider.shutdown()
    finally:
        server.shutdown()
    ((path, content_type, body),) = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    attributes = {item.key: item.value.string_value for item in resource_spans.resource.attributes}
    assert attributes["service.name"] == "streamwallet-gateway" and attributes["service.instance.id"] == "w7"
    assert [span.name for scope in resource_spans.scope_spans for span in scope.spans] == ["POST /v1/commands"]


def test_a_sample_ratio_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        tracer_provider(Settings(trace_sample_ratio=1.5), service="s")
    assert Settings.from_environment({"STREAMWALLET_TRACE_SAMPLE_RATIO": "0.25"}).trace_sample_ratio == 0.25


# -- the worker's hooks ------------------------------------------------------------------------------


class Worker:
    """A real Shard on an in-memory store, and the telemetry the loop would feed."""

    def __init__(self, *, ratio: float = 0.0) -> None:
        self.metrics = ProcessorMetrics()
        self.telemetry = WorkerTelemetry(
            Settings(trace_sample_ratio=ratio),
            commands_topic=COMMANDS_TOPIC,
            shards=dict,
            metrics=lambda: self.metrics,
            memory=dict,
        )
        self.spans = InMemorySpanExporter()
        self.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.shard = Shard(store=InMemoryStore(), config=ShardConfig(), is_local=lambda key: key.startswith("a"))
        self.offset = 0
        self.tally = self.telemetry.begin()

    def decide(self, decoded: Any, *, headers: list[tuple[str, Any]] | None = None) -> tuple[Outcome, Any]:
        self.offset += 1
        topic = COMMANDS_TOPIC if not isinstance(decoded, legs.CreditLeg) else LEGS_TOPIC
        message = Message(topic=topic, partition=2, offset=self.offset, headers=headers, timestamp=(2, 1_000))
        outcome = self.shard.handle(decoded, timestamp_ms=1_000)
        return outcome, self.telemetry.decided(message, decoded, outcome)

    def commit(self, messages: int = 1, *, decide_s: float = 0.002, send_s: float = 0.003) -> None:
        self.metrics.messages += messages
        self.metrics.decide_seconds += decide_s
        self.metrics.send_seconds += send_s
        self.metrics.commit_seconds += 0.004
        self.telemetry.committed(self.metrics, self.tally)
        self.tally = self.telemetry.begin()

    def abort(self) -> None:
        """The transaction aborted: the batch is decided again."""
        self.telemetry.dropped(self.tally)
        self.tally = self.telemetry.begin()

    def exposition(self) -> dict[str, Any]:
        body, _ = metrics_payload(self.telemetry.registry)
        return {family.name: family for family in text_string_to_metric_families(body.decode())}


def opened(worker: Worker, account: str) -> None:
    worker.decide(
        OpenAccount(
            principal=TESTER,
            owner=TESTER.principal_id,
            command_id=f"o-{account}",
            dedup_id="o",
            account_id=account,
            currency="USD",
        )
    )
    worker.decide(
        Deposit(
            principal=TESTER, command_id=f"d-{account}", dedup_id="d", account_id=account, amount=500, currency="USD"
        )
    )
    worker.commit(2)


def samples(families: dict[str, Any], family: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value for sample in families[family].samples if sample.name == name
    }


def test_results_count_by_type_and_code_only_once_their_transaction_commits() -> None:
    worker = Worker()
    opened(worker, "a1")
    worker.decide(
        Deposit(principal=TESTER, command_id="lost", dedup_id="lost", account_id="a1", amount=5, currency="USD")
    )
    worker.abort()
    worker.decide(Deposit(principal=TESTER, command_id="d2", dedup_id="d2", account_id="a1", amount=5, currency="EUR"))
    worker.commit()
    counted = samples(worker.exposition(), "streamwallet_worker_commands", "streamwallet_worker_commands_total")
    assert counted == {
        (("code", "OK"), ("type", "OpenAccount")): 1,
        (("code", "OK"), ("type", "Deposit")): 1,
        (("code", "CURRENCY_MISMATCH"), ("type", "Deposit")): 1,
    }
    latency = samples(
        worker.exposition(),
        "streamwallet_worker_command_latency_seconds",
        "streamwallet_worker_command_latency_seconds_count",
    )
    assert latency == {(("flow", "single"),): 3, (("flow", "cross_partition"),): 0}


def test_a_batch_decided_while_the_last_one_commits_counts_with_its_own_transaction() -> None:
    """The loop decides the next batch while the last one's transaction commits: the last
    one's commit counts its own results only, and the next batch's count when it commits,
    or never if it is dropped."""
    worker = Worker()
    opened(worker, "a1")
    worker.decide(Deposit(principal=TESTER, command_id="d1", dedup_id="d1", account_id="a1", amount=5, currency="USD"))
    committing, worker.tally = worker.tally, worker.telemetry.begin()
    worker.decide(Deposit(principal=TESTER, command_id="d2", dedup_id="d2", account_id="a1", amount=5, currency="EUR"))
    worker.telemetry.committed(worker.metrics, committing)
    counted = samples(worker.exposition(), "streamwallet_worker_commands", "streamwallet_worker_commands_total")
    assert counted[(("code", "OK"), ("type", "Deposit"))] == 2  # d-a1 and d1; d2 waits for its own
    assert (("code", "CURRENCY_MISMATCH"), ("type", "Deposit")) not in counted
    worker.commit()
    counted = samples(worker.exposition(), "streamwallet_worker_commands", "streamwallet_worker_commands_total")
    assert counted[(("code", "CURRENCY_MISMATCH"), ("type", "Deposit"))] == 1


def test_an_unsampled_command_carries_its_trace_context_on_untouched_and_makes_no_span() -> None:
    worker = Worker(ratio=0.0)
    opened(worker, "a1")
    outcome, headers = worker.decide(
        Deposit(principal=TESTER, command_id="d", dedup_id="d2", account_id="a1", amount=5, currency="USD"),
        headers=[("traceparent", UNSAMPLED.encode())],
    )
    worker.commit()
    assert outcome.events and headers == [("traceparent", UNSAMPLED.encode())]
    _, none = worker.decide(
        Deposit(principal=TESTER, command_id="e", dedup_id="d3", account_id="a1", amount=5, currency="USD")
    )
    assert none is None  # no trace, no legs: nothing to add to what it produces
    assert worker.spans.get_finished_spans() == ()


def test_a_sampled_transfer_gets_a_span_and_its_legs_continue_the_trace_with_the_commands_time() -> None:
    worker = Worker(ratio=0.0)
    opened(worker, "a1")
    transfer = Transfer(
        principal=TESTER,
        command_id="t1",
        dedup_id="t1",
        from_account_id="a1",
        to_account_id="b1",
        amount=5,
        currency="USD",
    )
    outcome, headers = worker.decide(transfer, headers=[("traceparent", SAMPLED.encode())])
    assert [type(leg) for leg in outcome.legs] == [legs.CreditLeg] and headers is not None
    assert worker.spans.get_finished_spans() == ()  # the span ends when its transaction commits
    worker.commit()
    (span,) = worker.spans.get_finished_spans()
    context = span.get_span_context()
    assert context is not None
    assert span.name == "decide Transfer" and span.parent is not None and span.parent.span_id == int(PARENT_SPAN, 16)
    assert format(context.trace_id, "032x") == TRACE_ID
    assert span.attributes is not None and span.attributes["streamwallet.command_id"] == "t1"
    assert span.attributes["messaging.destination.partition.id"] == "2"
    assert dict(headers) == {
        "traceparent": f"00-{TRACE_ID}-{context.span_id:016x}-01".encode(),
        COMMAND_APPENDED_HEADER: b"1000",
    }


def test_a_leg_that_ends_a_flow_is_timed_from_its_commands_append() -> None:
    worker = Worker()
    opened(worker, "a2")
    credit = legs.CreditLeg(
        transfer_id="t1",
        flow=legs.Flow.TRANSFER,
        command_id="t1",
        dedup_id="t1",
        command_type="Transfer",
        from_account_id="x1",
        to_account_id="a2",
        amount=5,
        currency="USD",
        source_position=Position(account_id="x1", sequence=2, balance=0, available=0),
        reversal_of=None,
        metadata={},
    )
    outcome, _ = worker.decide(credit, headers=[(COMMAND_APPENDED_HEADER, b"1000")])
    assert [result.command_type for result in outcome.results] == ["Transfer"]
    worker.commit()
    latency = samples(
        worker.exposition(),
        "streamwallet_worker_command_latency_seconds",
        "streamwallet_worker_command_latency_seconds_count",
    )
    assert latency[(("flow", "cross_partition"),)] == 1


def test_a_command_without_trace_context_starts_a_trace_at_the_sample_ratio() -> None:
    always, never = Worker(ratio=1.0), Worker(ratio=0.0)
    for worker in (always, never):
        opened(worker, "a1")
    assert len(always.spans.get_finished_spans()) == 2 and never.spans.get_finished_spans() == ()
    (root, _) = always.spans.get_finished_spans()
    assert root.parent is None and root.name == "decide OpenAccount"


def test_aborted_spans_end_marked_and_aborts_count_by_reason() -> None:
    from confluent_kafka import KafkaError

    worker = Worker()
    opened(worker, "a1")
    worker.decide(
        Deposit(principal=TESTER, command_id="d", dedup_id="d9", account_id="a1", amount=5, currency="USD"),
        headers=[("traceparent", SAMPLED.encode())],
    )
    worker.telemetry.aborted(KafkaError(KafkaError._STATE, "failed send", txn_requires_abort=True))
    worker.telemetry.aborted(KafkaError(KafkaError._STATE, "produce after a failed send"))
    worker.telemetry.aborted(KafkaError(KafkaError._TRANSPORT, "broker away", retriable=True))
    worker.abort()
    (span,) = worker.spans.get_finished_spans()
    assert span.status.description == "aborted" and [event.name for event in span.events] == [
        "transaction aborted; the batch is decided again"
    ]
    aborts = samples(
        worker.exposition(), "streamwallet_worker_transaction_aborts", "streamwallet_worker_transaction_aborts_total"
    )
    assert aborts == {(("reason", "abortable"),): 1, (("reason", "state"),): 1, (("reason", "retriable"),): 1}


def test_each_committed_transaction_observes_the_time_of_each_phase_of_its_turn() -> None:
    """Deciding (the batch taken to its records produced), sending (the records flushed and
    the offsets' call waited for), committing: where a turn's time goes, per transaction."""
    worker = Worker()
    worker.commit(decide_s=0.002, send_s=0.020)
    worker.commit(decide_s=0.030, send_s=0.001)
    families = worker.exposition()
    for phase, total in (("decide", 0.032), ("send", 0.021), ("commit", 0.008)):
        family = f"streamwallet_worker_transaction_{phase}_seconds"
        assert samples(families, family, f"{family}_count") == {(): 2}, phase
        assert samples(families, family, f"{family}_sum")[()] == pytest.approx(total), phase
    decide = samples(
        families,
        "streamwallet_worker_transaction_decide_seconds",
        "streamwallet_worker_transaction_decide_seconds_bucket",
    )
    assert decide[(("le", "0.0025"),)] == 1 and decide[(("le", "0.05"),)] == 2


def test_dead_letters_count_by_reason_once_committed() -> None:
    worker = Worker()
    worker.telemetry.dead_lettered("UNDECODABLE")
    worker.abort()
    worker.telemetry.dead_lettered("TOO_LARGE")
    worker.commit()
    letters = samples(worker.exposition(), "streamwallet_worker_dead_letters", "streamwallet_worker_dead_letters_total")
    assert letters == {(("reason", "TOO_LARGE"),): 1}


def test_the_latency_histogram_is_cumulative() -> None:
    histogram = LatencyHistogram((0.1, 1.0))
    histogram.observe_many([0.05, 0.1, 0.5, 3.0])
    buckets, total = histogram.snapshot()
    assert buckets == [("0.1", 2), ("1.0", 3), ("+Inf", 4)] and total == pytest.approx(3.65)


def test_the_lag_comes_from_librdkafkas_statistics_of_assigned_partitions() -> None:
    topics = {
        COMMANDS_TOPIC: {
            "partitions": {
                "-1": {"desired": False, "ls_offset": -1, "app_offset": -1001},
                "0": {"desired": True, "ls_offset": 120, "hi_offset": 125, "app_offset": 100},
                "1": {"desired": True, "ls_offset": 40, "app_offset": -1001, "next_offset": 38},
                "2": {"desired": False, "ls_offset": 40, "app_offset": 1},
                "3": {"desired": True, "ls_offset": -1, "app_offset": -1001, "next_offset": -1001},
            }
        }
    }
    assert dict(partition_lags(topics)) == {(COMMANDS_TOPIC, 0): 20, (COMMANDS_TOPIC, 1): 2}


def test_every_metric_is_in_the_readmes_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("### Metrics") : readme.index("### Logs")]
    for name, (kind, meaning) in observability.METRICS.items():
        exposed = f"{name}_total" if kind == "counter" else name
        assert f"`{exposed}`" in table, exposed
        assert meaning.endswith(".") and kind in ("counter", "gauge", "histogram"), name
