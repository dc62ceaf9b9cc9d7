"""Shared fixtures. Integration tests run against a real Kafka broker started from the
project's own Maven jars (deploy/local/kafka.py) once per session, on its own ports."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.local import kafka, registry
from foundation.settings import Settings
from tests.credentials import secured
from topologies.admin import ensure_topics

# Below Linux's ephemeral range (32768-60999): a client socket can hold any port in that
# range for a while, and a broker that cannot bind its port dies at start-up.
TEST_KAFKA_PORT = int(os.environ.get("STREAMWALLET_TEST_KAFKA_PORT", "29092"))
# The broker takes its port (+100, its controller); the registry looks in +250..+299, away
# from the three-broker test (29300.., 29400..) and the start-up tests (29500, 29700).
TEST_REGISTRY_PORTS = range(TEST_KAFKA_PORT + 250, min(TEST_KAFKA_PORT + 300, 32768))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak", action="store_true", help="also run the soak variants (marked slow): long streams, many faults"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak variants run only when asked: the default suite stays well inside CI's time."""
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="a soak variant: run with --soak")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A single-node KRaft broker for the whole session; stopped (and wiped) at the end
    unless STREAMWALLET_TEST_KEEP_KAFKA=1 asks to keep it for the next run."""
    cluster = kafka.start(name="test", brokers=1, base_port=TEST_KAFKA_PORT)
    yield cluster.bootstrap_servers
    if os.environ.get("STREAMWALLET_TEST_KEEP_KAFKA") != "1":
        kafka.stop(name="test", wipe=True)


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """A real Apicurio Registry (deploy/local/registry.py) for the whole session, on a free
    port below the ephemeral range; its Confluent-compatible API's URL. Stopped at the end."""
    port = next((port for port in TEST_REGISTRY_PORTS if kafka._port_free(port)), None)
    if port is None:
        raise RuntimeError(f"no free port for the schema registry in {TEST_REGISTRY_PORTS}")
    registry.stop(name="test")  # one left by an interrupted session
    started = registry.start(name="test", port=port)
    yield started.url
    registry.stop(name="test")


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return fresh_settings(kafka_bootstrap, tmp_path)


def fresh_settings(kafka_bootstrap: str, folder: Path, *, prefix: str = "t", **overrides: Any) -> Settings:
    """Settings of a fresh deployment: its own topics, data (in `folder`), ports and credentials
    (tests/credentials.py); topics created."""
    query_port = free_port()
    settings = Settings.from_environment(
        {},
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"{prefix}{uuid.uuid4().hex[:10]}",
        partitions=8,
        data_dir=folder / "data",
        clickhouse_dsn=f"chdb://{folder / 'clickhouse'}",
        worker_web_port=free_port(),
        query_port=query_port,
        query_url=f"http://127.0.0.1:{query_port}",
        gateway_port=free_port(),
        session_timeout_ms=6000,
        transaction_timeout_ms=5000,
        tick_interval_ms=500,
        **{**secured(folder / "credentials"), **overrides},
    )
    ensure_topics(settings.bootstrap_servers, settings.topology())
    return settings
