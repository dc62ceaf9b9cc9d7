"""The metric-name extractor the dashboard and rule tests rely on (tests/promql_names.py): it
finds every metric an expression reads and nothing else (functions, keywords, label names and
values, ranges, Grafana's variables, numbers)."""

from __future__ import annotations

import pytest

from tests.promql_names import metric_names


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("up", {"up"}),
        (
            'sum by (code) (rate(streamwallet_worker_commands_total{code!="OK"}[$__rate_interval]))',
            {"streamwallet_worker_commands_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (le, flow) (rate(a_seconds_bucket[5m] offset 1h))) > 1e3",
            {"a_seconds_bucket"},
        ),
        ("x > 0 and on (job) group_left (instance) y unless ignoring (partition) z", {"x", "y", "z"}),
        ('sum(b{instance=~"$instance", job="sum(c)"}) / 2^30 or vector(0)', {"b"}),
        ("streamwallet:sink_lag_events:sum > 10000", {"streamwallet:sink_lag_events:sum"}),
        ("label_values(streamwallet_worker_owned_partitions, instance)", {"streamwallet_worker_owned_partitions"}),
        ("sum without (le) (d) * bool e", {"d", "e"}),
    ],
)
def test_the_metric_names_an_expression_reads(expression: str, names: set[str]) -> None:
    assert metric_names(expression) == names
