"""bench/turns.py: the phases of the workers' turns over a run, from their /metrics text."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from bench.turns import TurnsUnread, TurnTotals, read_totals, split

EXPOSITION = """\
# HELP streamwallet_worker_transaction_decide_seconds d
# TYPE streamwallet_worker_transaction_decide_seconds histogram
streamwallet_worker_transaction_decide_seconds_bucket{le="+Inf"} 40.0
streamwallet_worker_transaction_decide_seconds_count 40.0
streamwallet_worker_transaction_decide_seconds_sum 0.2
# HELP streamwallet_worker_transaction_send_seconds s
# TYPE streamwallet_worker_transaction_send_seconds histogram
streamwallet_worker_transaction_send_seconds_bucket{le="+Inf"} 40.0
streamwallet_worker_transaction_send_seconds_count 40.0
streamwallet_worker_transaction_send_seconds_sum 0.4
# HELP streamwallet_worker_transaction_commit_seconds c
# TYPE streamwallet_worker_transaction_commit_seconds histogram
streamwallet_worker_transaction_commit_seconds_bucket{le="+Inf"} 40.0
streamwallet_worker_transaction_commit_seconds_count 40.0
streamwallet_worker_transaction_commit_seconds_sum 0.02
"""


@pytest.fixture
def served() -> Iterator[dict[str, str]]:
    """A web root whose /metrics answers what `served["text"]` holds."""
    page = {"text": EXPOSITION}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page["text"].encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    page["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield page
    server.shutdown()
    server.server_close()


def test_the_totals_are_read_from_a_workers_metrics(served: dict[str, str]) -> None:
    totals = read_totals(served["url"])
    assert totals.seconds == {"decide": 0.2, "send": 0.4, "commit": 0.02}
    assert totals.transactions == {"decide": 40, "send": 40, "commit": 40}


def test_metrics_without_the_turn_phases_are_refused_by_name(served: dict[str, str]) -> None:
    served["text"] = "\n".join(line for line in EXPOSITION.splitlines() if "send" not in line) + "\n"
    with pytest.raises(TurnsUnread, match="no turn metrics for send"):
        read_totals(served["url"])


def test_an_unreachable_worker_is_refused_not_read_as_zero() -> None:
    with pytest.raises(TurnsUnread):
        read_totals("http://127.0.0.1:9")


def totals(decide: float, send: float, commit: float, count: float) -> TurnTotals:
    return TurnTotals(
        seconds={"decide": decide, "send": send, "commit": commit},
        transactions=dict.fromkeys(("decide", "send", "commit"), count),
    )


def test_the_split_is_the_mean_of_each_phase_over_the_runs_transactions_of_every_worker() -> None:
    before = [totals(1.0, 2.0, 0.1, 100), totals(0.5, 0.5, 0.05, 50)]
    after = [totals(1.3, 2.5, 0.11, 130), totals(0.6, 0.8, 0.06, 60)]  # 30 + 10 transactions
    turns = split(before, after)
    assert turns.transactions == 40
    assert turns.mean_ms == pytest.approx({"decide": 10.0, "send": 20.0, "commit": 0.5})


def test_a_run_in_which_nothing_committed_has_no_split() -> None:
    with pytest.raises(TurnsUnread, match="no transaction committed"):
        split([totals(1, 1, 1, 10)], [totals(1, 1, 1, 10)])
