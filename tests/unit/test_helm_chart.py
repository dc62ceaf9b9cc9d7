"""The Helm chart in deploy/helm/streamwallet: `helm lint --strict`, and what `helm template` renders.

A real helm binary is built from source by deploy/helm-tool.sh into .cache/bin/helm when it is
missing (about 1.5 minutes the first time); a failed build fails these tests.

The rendered YAML is checked as text here, one document at a time: the templates render a fixed
layout, and the checks below match it (the newer chart tests parse it: tests/helm_chart.py).
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from foundation.settings import ENVIRONMENT_PREFIX, Settings
from tests.helm_chart import API_KEYS, CHART, FULLNAME, NAMESPACE, Helm, build_helm, render, render_fails

SETTINGS_VARIABLES = {ENVIRONMENT_PREFIX + field.name.upper() for field in dataclasses.fields(Settings)}
VARIABLE = re.compile(r"\bSTREAMWALLET_[A-Z0-9_]+\b")
SERVER_DSN = "clickhouse.dsn=http://clickhouse:8123"
SERVER = ("clickhouse.dsn=http://wallet@clickhouse:8123", "clickhouse.passwordSecret.name=clickhouse-wallet")
KAFKA_USERS = ("worker", "query", "gateway", "topics")
SASL_SSL = (
    "kafka.security.protocol=SASL_SSL",
    "kafka.security.caSecret.name=kafka-ca",
    *(f"kafka.security.users.{user}.username=wallet-{user}" for user in KAFKA_USERS),
    *(f"kafka.security.users.{user}.passwordSecret.name={user}-kafka" for user in KAFKA_USERS),
)


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return build_helm(tmp_path_factory.mktemp("helm-home"))


def kind(document: str) -> str:
    match = re.search(r"^kind: (\S+)$", document, flags=re.MULTILINE)
    assert match, document[:500]
    return match.group(1)


def name(document: str) -> str:
    match = re.search(r"^metadata:\n(?:  .*\n)*?  name: (\S+)$", document, flags=re.MULTILINE)
    assert match, document[:500]
    return match.group(1)


def find(documents: list[str], wanted_kind: str, wanted_name: str) -> str:
    found = [d for d in documents if kind(d) == wanted_kind and name(d) == wanted_name]
    assert len(found) == 1, f"{wanted_kind} {wanted_name}: found {len(found)} in {summary(documents)}"
    return found[0]


def summary(documents: list[str]) -> list[tuple[str, str]]:
    return [(kind(d), name(d)) for d in documents]


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def literal_env(document: str) -> dict[str, str]:
    """The `- name: X / value: v` pairs of a pod's containers (not the valueFrom ones)."""
    pairs = re.findall(r"^\s+- name: (\S+)\n\s+value: (.*)$", document, flags=re.MULTILINE)
    return {key: unquote(value) for key, value in pairs}


def config_data(documents: list[str]) -> dict[str, str]:
    configmap = find(documents, "ConfigMap", f"{FULLNAME}-config")
    data = configmap.split("\ndata:\n", 1)[1]
    pairs = re.findall(r"^  (\S+): (.*)$", data, flags=re.MULTILINE)
    return {key: unquote(value) for key, value in pairs}


def replicas(document: str) -> int:
    match = re.search(r"^  replicas: (\d+)$", document, flags=re.MULTILINE)
    assert match, document[:500]
    return int(match.group(1))


def test_lint_strict_passes(helm: Helm) -> None:
    for sets in (
        [],
        ["--set", SERVER_DSN, "--set", "query.replicas=3", "--set", "gateway.ingress.enabled=true"],
        [flag for value in SASL_SSL for flag in ("--set", value)],
    ):
        result = helm.run("lint", "--strict", str(CHART), "--set", API_KEYS, *sets)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


def test_defaults_render_every_component(helm: Helm) -> None:
    documents = render(helm)
    assert sorted(summary(documents)) == sorted(
        [
            ("ConfigMap", f"{FULLNAME}-config"),
            ("Deployment", f"{FULLNAME}-gateway"),
            ("Job", f"{FULLNAME}-topics"),
            ("PodDisruptionBudget", f"{FULLNAME}-gateway"),
            ("PodDisruptionBudget", f"{FULLNAME}-query"),
            ("PodDisruptionBudget", f"{FULLNAME}-worker"),
            ("Service", f"{FULLNAME}-gateway"),
            ("Service", f"{FULLNAME}-query"),
            ("Service", f"{FULLNAME}-query-headless"),
            ("Service", f"{FULLNAME}-worker-headless"),
            ("ServiceAccount", FULLNAME),
            ("StatefulSet", f"{FULLNAME}-query"),
            ("StatefulSet", f"{FULLNAME}-worker"),
        ]
    )
    for document in documents:
        assert "app.kubernetes.io/instance: wallet" in document
        assert "app.kubernetes.io/name: streamwallet" in document


def test_workers_are_a_statefulset_named_by_their_pods(helm: Helm) -> None:
    worker = find(render(helm), "StatefulSet", f"{FULLNAME}-worker")
    assert replicas(worker) == 2
    assert re.search(
        r"- name: STREAMWALLET_WORKER_ID\n\s+valueFrom:\n\s+fieldRef:\n\s+fieldPath: metadata\.name\n", worker
    ), worker
    assert 'command: ["streamwallet"]\n          args: ["worker"]' in worker
    env = literal_env(worker)
    assert env["STREAMWALLET_DATA_DIR"] == "/data"
    assert env["STREAMWALLET_WORKER_WEB_HOST"] == "0.0.0.0"
    assert env["STREAMWALLET_WORKER_WEB_PORT"] == "6066"
    assert "containerPort: 6066" in worker
    assert re.search(r"path: /health\n\s+port: http", worker)
    assert re.search(r"readinessProbe:\n\s+httpGet:\n\s+path: /ready", worker)
    assert "terminationGracePeriodSeconds: 30" in worker
    assert "volumeClaimTemplates:" in worker
    assert "mountPath: /data" in worker
    assert "preferredDuringSchedulingIgnoredDuringExecution" in worker
    assert "readOnlyRootFilesystem: true" in worker
    assert "runAsNonRoot: true" in worker


def test_worker_cache_can_be_an_empty_dir(helm: Helm) -> None:
    worker = find(render(helm, "worker.persistence.enabled=false"), "StatefulSet", f"{FULLNAME}-worker")
    assert "volumeClaimTemplates:" not in worker
    assert re.search(r"- name: data\n\s+emptyDir:", worker), worker


def test_worker_disruption_budget(helm: Helm) -> None:
    budget = find(render(helm), "PodDisruptionBudget", f"{FULLNAME}-worker")
    assert "maxUnavailable: 1" in budget
    assert "app.kubernetes.io/component: worker" in budget


def test_query_with_embedded_chdb_is_one_pod_with_a_volume(helm: Helm) -> None:
    documents = render(helm)
    query = find(documents, "StatefulSet", f"{FULLNAME}-query")
    assert replicas(query) == 1
    assert "volumeClaimTemplates:" in query
    assert 'args: ["query"]' in query
    assert literal_env(query)["STREAMWALLET_QUERY_HOST"] == "0.0.0.0"
    assert config_data(documents)["STREAMWALLET_CLICKHOUSE_DSN"] == "chdb:///data/clickhouse"


def test_query_replicas_with_chdb_fail_to_render(helm: Helm) -> None:
    error = render_fails(helm, "query.replicas=2")
    assert "replicas" in error


def test_query_scales_out_with_a_clickhouse_server(helm: Helm) -> None:
    documents = render(helm, SERVER_DSN, "query.replicas=2")
    query = find(documents, "Deployment", f"{FULLNAME}-query")
    assert replicas(query) == 2
    assert "volumeClaimTemplates:" not in query
    assert "mountPath: /data" not in query
    assert ("Service", f"{FULLNAME}-query-headless") not in summary(documents)
    assert config_data(documents)["STREAMWALLET_CLICKHOUSE_DSN"] == "http://clickhouse:8123"


def test_topics_are_created_by_a_hook_job_before_the_workers(helm: Helm) -> None:
    documents = render(helm)
    job = find(documents, "Job", f"{FULLNAME}-topics")
    assert '"helm.sh/hook": pre-install,pre-upgrade' in job
    assert 'command: ["streamwallet"]\n          args: ["topics", "create"]' in job
    assert "restartPolicy: Never" in job
    # A hook runs before the ConfigMap exists: the job carries the same settings inline.
    assert literal_env(job) == config_data(documents)


def test_gateway_binds_everywhere_and_reads_through_the_query_service(helm: Helm) -> None:
    documents = render(helm)
    gateway = find(documents, "Deployment", f"{FULLNAME}-gateway")
    assert replicas(gateway) == 2
    assert literal_env(gateway)["STREAMWALLET_GATEWAY_HOST"] == "0.0.0.0"
    assert "STREAMWALLET_QUERY_HOST" not in gateway
    assert config_data(documents)["STREAMWALLET_QUERY_URL"] == f"http://{FULLNAME}-query.{NAMESPACE}.svc:8081"
    assert ("Ingress", f"{FULLNAME}-gateway") not in summary(documents)
    ingress = find(render(helm, "gateway.ingress.enabled=true"), "Ingress", f"{FULLNAME}-gateway")
    assert f"name: {FULLNAME}-gateway" in ingress


def test_every_variable_the_chart_sets_is_a_settings_field(helm: Helm) -> None:
    renders = [
        render(helm),
        render(helm, SERVER_DSN, "query.replicas=2", "worker.persistence.enabled=false"),
        render(helm, "settings.session_timeout_ms=9000", "settings.static_membership=false"),
        render(helm, *SASL_SSL),
    ]
    variables = {variable for documents in renders for document in documents for variable in VARIABLE.findall(document)}
    assert "STREAMWALLET_WORKER_ID" in variables
    assert variables - SETTINGS_VARIABLES == set()


def test_rendered_settings_parse_as_settings(helm: Helm) -> None:
    documents = render(
        helm,
        "settings.session_timeout_ms=9000",
        "settings.static_membership=false",
        "settings.trace_sample_ratio=0.05",
        "settings.otlp_traces_endpoint=http://otel-collector:4318/v1/traces",
    )
    worker = find(documents, "StatefulSet", f"{FULLNAME}-worker")
    environment = {**config_data(documents), **literal_env(worker), "STREAMWALLET_WORKER_ID": "worker-0"}
    settings = Settings.from_environment(environment)
    assert settings.log_format == "json"  # deployed processes log JSON lines (locally: text)
    assert settings.trace_sample_ratio == 0.05
    assert settings.otlp_traces_endpoint == "http://otel-collector:4318/v1/traces"
    assert settings.bootstrap_servers == "kafka:9092"
    assert (settings.partitions, settings.replication_factor, settings.min_insync_replicas) == (8, 3, 2)
    assert settings.session_timeout_ms == 9000
    assert settings.static_membership is False
    assert str(settings.data_dir) == "/data"
    assert settings.worker_web_port == 6066


def test_sasl_ssl_gives_each_component_its_user_with_the_password_in_a_file(helm: Helm) -> None:
    documents = render(helm, *SASL_SSL)
    config = config_data(documents)
    assert config["STREAMWALLET_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["STREAMWALLET_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    workloads = {
        "worker": find(documents, "StatefulSet", f"{FULLNAME}-worker"),
        "query": find(documents, "StatefulSet", f"{FULLNAME}-query"),
        "gateway": find(documents, "Deployment", f"{FULLNAME}-gateway"),
        "topics": find(documents, "Job", f"{FULLNAME}-topics"),
    }
    for user, workload in workloads.items():
        env = literal_env(workload)
        assert env["STREAMWALLET_KAFKA_USERNAME"] == f"wallet-{user}"
        assert env["STREAMWALLET_KAFKA_PASSWORD_FILE"] == "/etc/streamwallet/kafka-user/password"
        assert env["STREAMWALLET_KAFKA_CA_FILE"] == "/etc/streamwallet/kafka-ca/ca.crt"
        assert re.search(
            rf"- name: kafka-user\n\s+secret:\n\s+secretName: {user}-kafka\n(?:\s+#.*\n)?\s+defaultMode: 0440\n"
            r"\s+items:\n\s+- key: password\n\s+path: password\n",
            workload,
        ), workload
        assert re.search(r"- name: kafka-ca\n\s+secret:\n\s+secretName: kafka-ca\n", workload)
        assert re.search(r"- name: kafka-user\n\s+mountPath: /etc/streamwallet/kafka-user\n\s+readOnly: true", workload)
        settings = Settings.from_environment({**config, **env, "STREAMWALLET_WORKER_ID": "worker-0"})
        assert (settings.kafka_security_protocol, settings.kafka_username) == ("SASL_SSL", f"wallet-{user}")
    # Passwords reach the pods as files only: no password variable anywhere.
    assert not [document for document in documents if "STREAMWALLET_KAFKA_PASSWORD:" in document]
    assert not [document for document in documents if re.search(r"name: STREAMWALLET_KAFKA_PASSWORD\n", document)]


def test_plaintext_mounts_no_kafka_secret(helm: Helm) -> None:
    for document in render(helm):
        assert "kafka-user" not in document and "STREAMWALLET_KAFKA_USERNAME" not in document


def test_schema_settings_are_settings_fields(helm: Helm) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    names = schema["properties"]["settings"]["propertyNames"]["enum"]
    assert set(names) <= {field.name for field in dataclasses.fields(Settings)}
    error = render_fails(helm, "settings.no_such_setting=1")
    assert "no_such_setting" in error
    render_fails(helm, "settings.worker_id=fixed")  # managed by the chart (the pod name)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("worker.replicas=9",), "kafka.partitions"),
        (("kafka.minInsyncReplicas=4",), "minInsyncReplicas"),
        (("kafka.bootstrapServers=",), "bootstrapServers"),
        (("clickhouse.dsn=chdb:///var/lib/clickhouse",), "dsn"),
        (("kafka.security.protocol=SASL_SSL",), "set kafka.security.users.worker.username"),
        (SASL_SSL[:-1], "set kafka.security.users.topics.username"),
        (("kafka.security.users.query.username=reader",), "PLAINTEXT, which would ignore it"),
        (("kafka.security.caSecret.name=kafka-ca",), "PLAINTEXT, which would ignore it"),
        (("kafka.security.protocol=SASL_PLAINTEXT",), "protocol"),
        (("settings.kafka_username=someone",), "kafka_username"),
        (("gateway.auth.jwt.clockSkewSeconds=301",), "clockSkewSeconds"),
        (("gateway.rateLimit.burst=0",), "burst"),
        (("gateway.auth.jwt.issuer=",), "issuer"),
        (("query.sql.threadsMax=0",), "threadsMax"),
        (("schemaRegistry.framing=confluent",), "set schemaRegistry.url"),
        (("schemaRegistry.framing=avro",), "framing"),
        (("schemaRegistry.url=apicurio:8080",), "url"),
        (("query.readReplicas.enabled=true",), "query.readReplicas needs a ClickHouse server"),
        (("clickhouse.dsn=http://wallet:hunter2@clickhouse:8123",), "has a password in it"),
        (("clickhouse.passwordSecret.name=clickhouse-wallet",), "embedded chDB, which has no password"),
        (("clickhouse.dsn=http://clickhouse:8123", "clickhouse.passwordSecret.name=ch"), "names no user"),
        (
            (*SERVER, "query.readReplicas.enabled=true", "query.readReplicas.clickhousePasswordSecret.name=reader"),
            "without query.readReplicas.clickhouseDsn",
        ),
        (
            (
                *SERVER,
                "query.readReplicas.enabled=true",
                "query.readReplicas.clickhouseDsn=http://r:pw@clickhouse:8123",
            ),
            "query.readReplicas.clickhouseDsn has a password in it",
        ),
    ],
)
def test_invalid_values_fail_to_render(helm: Helm, sets: tuple[str, ...], message: str) -> None:
    assert message in render_fails(helm, *sets)
