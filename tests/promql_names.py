"""The metric names a PromQL expression reads (or a Grafana variable's `label_values(...)`
query), and the series names a scrape of /metrics exposes: what the dashboard and rule tests
compare, so that a renamed or removed metric fails the suite.

Not a PromQL parser: label matchers, strings, ranges and the label lists of `by`, `without`,
`on`, `ignoring`, `group_left` and `group_right` are removed, then every identifier that is
not a function, a keyword or an aggregation is a metric name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
    }
)
# Series Prometheus makes itself for every target, and the ones its rule manager makes.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$\{?\w+(?::\w+)?\}?")
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*$", re.DOTALL)


def metric_names(expression: str) -> set[str]:
    """The metric names `expression` (PromQL, or `label_values(<selector>, <label>)`) reads."""
    if match := _LABEL_VALUES.match(expression):
        expression = match.group(1)
    text = _STRING.sub(" ", expression)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _VARIABLE.sub(" 1 ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in KEYWORDS and not _is_number(text, match.start()):
            names.add(name)
    return names


def _is_number(text: str, start: int) -> bool:
    """An identifier glued to a digit before it is a number's exponent or a duration (1e3, 5m)."""
    return start > 0 and text[start - 1].isdigit()


def dashboard_expressions(path: Path) -> Iterator[tuple[str, str]]:
    """(where, expression) of every query of a Grafana dashboard: each panel's targets (rows'
    panels included) and each templating variable's query."""
    model = json.loads(path.read_text())
    for panel in _panels(model.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"{path.name}: panel {panel.get('title')!r} {target.get('refId')}", target["expr"]
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if text:
            yield f"{path.name}: variable {variable['name']}", text


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def rule_file_rules(path: Path) -> list[dict[str, Any]]:
    """Every rule of a Prometheus rule file, in order."""
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def rule_expressions(path: Path) -> Iterator[tuple[str, str]]:
    for rule in rule_file_rules(path):
        yield f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]


def recorded_names(path: Path) -> set[str]:
    """The series a rule file's recording rules make."""
    return {rule["record"] for rule in rule_file_rules(path) if "record" in rule}


def exposed_series(families: Iterable[Any]) -> set[str]:
    """The series names a scrape holds, from prometheus-client's parsed families (a family
    with no sample yet still declares its series: counter `_total`, histogram `_bucket`,
    `_count`, `_sum`, ...)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("", "_count", "_sum"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in families:
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names
