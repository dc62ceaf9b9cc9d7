"""Shared fixtures. Integration tests run against a real Kafka broker started from the
project's own Maven jars (deploy/local/kafka.py) once per session, on its own ports.

Secured mode: `kafka_secured` starts a second broker (SASL_SSL, SCRAM-SHA-512, ACLs with
deny by default) with one user per role of topologies/access.py. A test module runs in
both modes with
    pytestmark = pytest.mark.parametrize("kafka_mode", ["plaintext", "secured"], indirect=True)
and uses `deployment` (or `settings`, the operator's): in secured mode each process of
`deployment.stack(...)` runs as its role's user, with exactly the declared ACLs."""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from deploy.local import kafka, registry
from foundation.clients import kafka_config
from foundation.settings import Settings
from streamwallet.stack import Stack
from tests.credentials import secured
from topologies.access import Role, grants
from topologies.admin import ensure_acls, ensure_topics

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


# The session's shared servers, by the marker a test that uses one carries: `./sw test` runs
# the tests without these markers in parallel processes, and the rest in one, since every
# process would start (and stop) the same broker and registry.
SHARED_SERVER_FIXTURES = {
    "kafka_bootstrap": "kafka",
    "kafka_secured": "kafka",
    "deployment": "kafka",  # asks for one of the two brokers by name (getfixturevalue)
    "schema_registry_url": "registry",
}


def shared_server_markers(item: pytest.Item) -> set[str]:
    """The markers of the shared servers a test asks for (by its fixtures, transitively)."""
    fixtures = getattr(item, "fixturenames", ())
    return {marker for name, marker in SHARED_SERVER_FIXTURES.items() if name in fixtures}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that uses a shared server is marked for it, whether its module says so or not.
    Soak variants run only when asked: the default suite stays well inside CI's time."""
    for item in items:
        for marker in shared_server_markers(item) - set(item.keywords):
            item.add_marker(marker)
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="a soak variant: run with --soak")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# The secured broker's ports: base+0 for clients, base+100 for its controller (29142 and
# 29242 by default; with STREAMWALLET_TEST_KAFKA_PORT=N, N+50 and N+150).
TEST_KAFKA_SECURED_PORT = int(os.environ.get("STREAMWALLET_TEST_KAFKA_SECURED_PORT", str(TEST_KAFKA_PORT + 50)))
SECURED_CLUSTER = "test-secured"
# The processes of a Stack, by the role whose Kafka user each runs as.
STACK_ROLES = {"worker": Role.WORKER, "query": Role.QUERY, "gateway": Role.COMMAND_PRODUCER}


# The ports of the processes a test starts (web, query, gateway): below the ephemeral range
# and away from the brokers' (27000-31999), so a client socket never holds the port of a
# process the test kills and restarts. Drawn at random so that concurrent sessions rarely
# meet; each handed out once per session.
PROCESS_PORTS = range(20_000, 27_000)
_handed_out: set[int] = set()


def free_port() -> int:
    rng = random.Random()
    for _ in range(1_000):
        port = rng.choice(PROCESS_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {PROCESS_PORTS}")


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


@dataclasses.dataclass(frozen=True)
class SecuredKafka:
    """The secured test cluster: its users are `admin` (a super user) and one per Role."""

    cluster: kafka.Cluster

    def credentials(self, user: str) -> dict[str, Any]:
        """Settings fields that make a client log in as `user`."""
        return {
            "bootstrap_servers": self.cluster.bootstrap_servers,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": kafka.SCRAM_MECHANISM,
            "kafka_username": user,
            "kafka_password_file": self.cluster.password_file(user),
            "kafka_ca_file": self.cluster.ca_file,
        }

    @staticmethod
    def principals() -> dict[Role, str]:
        return {role: f"User:{role.value}" for role in Role}


@pytest.fixture(scope="session")
def kafka_secured() -> Iterator[SecuredKafka]:
    """A single-node broker with SASL_SSL and ACLs for the whole session; stopped and wiped
    at the end (unless STREAMWALLET_TEST_KEEP_KAFKA=1)."""
    cluster = kafka.start(name=SECURED_CLUSTER, brokers=1, base_port=TEST_KAFKA_SECURED_PORT, secured=True)
    kafka.add_users(cluster, [role.value for role in Role])
    yield SecuredKafka(cluster)
    if os.environ.get("STREAMWALLET_TEST_KEEP_KAFKA") != "1":
        kafka.stop(name=SECURED_CLUSTER, wipe=True)


@dataclasses.dataclass(frozen=True)
class Deployment:
    """A fresh deployment. `settings` are the operator's (who created the topics and ACLs;
    tests read the topics with them); `role_overrides` make a role's processes log in as
    that role's user (empty in plaintext mode)."""

    settings: Settings
    role_overrides: Mapping[Role, Mapping[str, Any]]

    def as_role(self, role: Role) -> Settings:
        return dataclasses.replace(self.settings, **self.role_overrides.get(role, {}))

    def client(self, role: Role, **overrides: Any) -> dict[str, Any]:
        """A librdkafka configuration for a client acting as `role`."""
        return kafka_config(self.as_role(role), **overrides)

    def stack(self, run_dir: Path) -> Stack:
        overrides = {name: self.role_overrides.get(role, {}) for name, role in STACK_ROLES.items()}
        return Stack(self.settings, run_dir, role_overrides=overrides)


@pytest.fixture
def kafka_mode(request: pytest.FixtureRequest) -> str:
    """ "plaintext" unless a test module parametrizes it (indirect=True)."""
    return str(getattr(request, "param", "plaintext"))


@pytest.fixture
def deployment(kafka_mode: str, request: pytest.FixtureRequest, tmp_path: Path) -> Deployment:
    if kafka_mode == "plaintext":
        return Deployment(fresh_settings(request.getfixturevalue("kafka_bootstrap"), tmp_path), {})
    assert kafka_mode == "secured", kafka_mode
    return secured_deployment(request.getfixturevalue("kafka_secured"), tmp_path)


def secured_deployment(secured: SecuredKafka, folder: Path, **overrides: Any) -> Deployment:
    """A fresh deployment on the secured cluster: topics and ACLs created by `admin`."""
    admin = secured.credentials(kafka.ADMIN_USER)
    settings = fresh_settings(admin.pop("bootstrap_servers"), folder, **admin, **overrides)
    ensure_acls(kafka_config(settings), grants(settings.topology(), secured.principals()))
    role_overrides = {
        role: {key: value for key, value in secured.credentials(role.value).items() if key != "bootstrap_servers"}
        for role in Role
    }
    return Deployment(settings, role_overrides)


@pytest.fixture
def settings(deployment: Deployment) -> Settings:
    return deployment.settings


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
    ensure_topics(kafka_config(settings), settings.topology())
    return settings
