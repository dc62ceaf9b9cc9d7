"""Every field of foundation.settings.Settings is reachable from the chart: either the chart sets
it from its own values (Kafka, ClickHouse, the registry, ports, authentication, ...) or the
`settings:` map accepts it by name. A field added to Settings and forgotten here fails
test_every_settings_field_is_set_by_the_chart_or_allowed_in_settings, naming the field.

"Set by the chart" is observed, not declared: the variables the chart's value sets
(deploy/helm/streamwallet/ci/*-values.yaml) make it render, outside the `settings:` map.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
import yaml

from foundation.settings import ENVIRONMENT_PREFIX, Settings
from tests.helm_chart import (
    CHART,
    FULLNAME,
    Helm,
    build_helm,
    environment_names,
    find_object,
    literal_environment,
    render_fails,
    render_objects,
    value_set_files,
)

FIELDS = {field.name for field in dataclasses.fields(Settings)}
# Fields the chart never sets and refuses in `settings:`, and why.
WITHHELD = {"kafka_password": "a password reaches the pods as a file only (kafka_password_file, from a Secret)"}
# Fields whose chart value defaults to the product's default (a changed default fails the test below).
DEFAULTED_BY_CHART = (
    "avro_framing",
    "schema_registry_url",
    "query_read_only",
    "sql_query_time_ms_max",
    "sql_memory_bytes_max",
    "sql_result_rows_max",
    "sql_result_bytes_max",
    "sql_threads_max",
    "gateway_rate_limit_per_s",
    "gateway_rate_limit_burst",
    "auth_jwt_audience",
    "auth_jwt_issuer",
    "auth_jwt_roles_claim",
    "auth_clock_skew_s",
)


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return build_helm(tmp_path_factory.mktemp("helm-home"))


def allowed_in_settings() -> set[str]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    return set(schema["properties"]["settings"]["propertyNames"]["enum"])


def settings_keys(values_file: Path) -> set[str]:
    return set((yaml.safe_load(values_file.read_text()) or {}).get("settings") or {})


@pytest.fixture(scope="module")
def set_by_chart(helm: Helm) -> set[str]:
    """The fields the chart sets from its own values, over every value set."""
    fields: set[str] = set()
    defaults = settings_keys(CHART / "values.yaml")
    for file in value_set_files():
        names = environment_names(render_objects(helm, files=(file,)))
        from_map = defaults | settings_keys(file)
        fields |= {
            name.removeprefix(ENVIRONMENT_PREFIX).lower() for name in names if name.startswith(ENVIRONMENT_PREFIX)
        } - from_map
    return fields


def test_every_settings_field_is_set_by_the_chart_or_allowed_in_settings(set_by_chart: set[str]) -> None:
    allowed = allowed_in_settings()
    unreachable = sorted(FIELDS - set_by_chart - allowed - set(WITHHELD))
    assert not unreachable, (
        f"Settings fields the chart can neither set nor pass through: {unreachable}. Add each to the "
        "settings enum of deploy/helm/streamwallet/values.schema.json, or give it a value of its own "
        "(and render it in one of the value sets in deploy/helm/streamwallet/ci/)"
    )
    assert set_by_chart <= FIELDS, sorted(set_by_chart - FIELDS)
    assert allowed <= FIELDS, f"the settings enum names fields Settings does not have: {sorted(allowed - FIELDS)}"


def test_what_the_chart_sets_is_not_also_allowed_in_settings(set_by_chart: set[str]) -> None:
    assert allowed_in_settings() & (set_by_chart | set(WITHHELD)) == set()
    assert not set(WITHHELD) & set_by_chart


def test_the_template_check_refuses_every_field_the_chart_owns(helm: Helm) -> None:
    """Behind the schema (reached with --skip-schema-validation), the template names them all."""
    owned = sorted(FIELDS - allowed_in_settings())
    error = render_fails(helm, *(f"settings.{field}=1" for field in owned), extra=("--skip-schema-validation",))
    message = error.split("settings.", 1)[1].split(": managed by the chart", 1)[0]
    assert sorted(message.split(", settings.")) == owned


def example_value(field: dataclasses.Field[typing.Any]) -> tuple[str, typing.Any]:
    """A value other than the default, as --set text and as Settings holds it."""
    hint = typing.get_type_hints(Settings)[field.name]
    default = Settings().__getattribute__(field.name)
    if hint is bool:
        return str(not default).lower(), not default
    if hint is int:
        return str(default + 7), default + 7
    if hint is float:
        return "0.25", 0.25
    return f"chart-{field.name}", f"chart-{field.name}"


def test_every_allowed_setting_reaches_the_processes(helm: Helm) -> None:
    examples = {field.name: example_value(field) for field in dataclasses.fields(Settings)}
    allowed = sorted(allowed_in_settings())
    objects = render_objects(helm, *(f"settings.{name}={examples[name][0]}" for name in allowed))
    config = find_object(objects, "ConfigMap", f"{FULLNAME}-config")["data"]
    for workload in (
        find_object(objects, "StatefulSet", f"{FULLNAME}-worker"),
        find_object(objects, "StatefulSet", f"{FULLNAME}-query"),
        find_object(objects, "Deployment", f"{FULLNAME}-gateway"),
    ):
        environment = {**config, **literal_environment(workload), "STREAMWALLET_WORKER_ID": "worker-0"}
        settings = Settings.from_environment(environment)
        for name in allowed:
            assert getattr(settings, name) == examples[name][1], name


def test_the_charts_defaults_are_the_products(helm: Helm) -> None:
    objects = render_objects(helm)
    config = find_object(objects, "ConfigMap", f"{FULLNAME}-config")["data"]
    environment = {
        **config,
        **literal_environment(find_object(objects, "StatefulSet", f"{FULLNAME}-query")),
        **literal_environment(find_object(objects, "Deployment", f"{FULLNAME}-gateway")),
    }
    chart = Settings.from_environment(environment)
    product = Settings()
    differing = {name: (getattr(chart, name), getattr(product, name)) for name in DEFAULTED_BY_CHART}
    assert {name: pair for name, pair in differing.items() if pair[0] != pair[1]} == {}
