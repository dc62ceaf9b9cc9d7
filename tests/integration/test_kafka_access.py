"""Connecting to the secured broker: a wrong password, no TLS, an untrusted CA or a
mechanism the broker does not offer fail at once with the reason (never the password); a
worker started with bad credentials exits at start-up saying why; a good worker makes no
connection but its own (Faust's Kafka client stays off); secrets stay private."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from deploy.local import kafka, security
from foundation.clients import KafkaAccessError, check_kafka_access
from foundation.settings import Settings
from streamwallet.stack import Stack
from tests.conftest import SecuredKafka, secured_deployment
from topologies.access import Role

pytestmark = pytest.mark.kafka

ACCESS_TIMEOUT_S = 5.0
# Clients connect to the broker listener only (the controller listener is not advertised).
FAILED_AUTHENTICATION = "[SocketServer listenerType=BROKER, nodeId=1] Failed authentication with /127.0.0.1"


def worker_settings(secured: SecuredKafka, **changes: Any) -> Settings:
    return Settings(**{**secured.credentials(Role.WORKER.value), **changes})


def wrong_password_file(folder: Path) -> Path:
    path = folder / "wrong.password"
    path.write_text("not-the-password")
    return path


def other_ca(folder: Path) -> Path:
    """The certificate of a CA the broker's certificate does not come from."""
    other = folder / "other-ca"
    other.mkdir()
    security.ensure_certificates(other)
    return other / "ca.pem"


CASES: dict[str, tuple[Callable[[Path], dict[str, Any]], str]] = {
    "wrong password": (lambda folder: {"kafka_password_file": wrong_password_file(folder)}, "authentication failed"),
    "unknown user": (lambda folder: {"kafka_username": f"nobody-{uuid.uuid4().hex[:6]}"}, "authentication failed"),
    "a mechanism the broker does not offer": (
        lambda folder: {"kafka_sasl_mechanism": "SCRAM-SHA-256"},
        "authentication failed",
    ),
    "untrusted CA": (lambda folder: {"kafka_ca_file": other_ca(folder)}, "certificate is not trusted"),
    "no TLS (PLAINTEXT)": (
        lambda folder: {
            "kafka_security_protocol": "PLAINTEXT",
            "kafka_username": "",
            "kafka_password_file": None,
            "kafka_ca_file": None,
        },
        "expects another protocol",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_client_that_cannot_log_in_is_told_why(kafka_secured: SecuredKafka, tmp_path: Path, case: str) -> None:
    changes, reason = CASES[case]
    settings = worker_settings(kafka_secured, **changes(tmp_path))
    with pytest.raises(KafkaAccessError, match=reason) as raised:
        check_kafka_access(settings, timeout_s=ACCESS_TIMEOUT_S)
    message = str(raised.value)
    assert settings.bootstrap_servers in message
    assert kafka_secured.cluster.password_file(Role.WORKER.value).read_text().strip() not in message
    assert "not-the-password" not in message


def test_the_right_credentials_log_in(kafka_secured: SecuredKafka) -> None:
    for role in Role:
        check_kafka_access(Settings(**kafka_secured.credentials(role.value)), timeout_s=ACCESS_TIMEOUT_S)


def test_a_worker_with_a_wrong_password_exits_at_start_up_saying_why(
    kafka_secured: SecuredKafka, tmp_path: Path
) -> None:
    deployment = secured_deployment(kafka_secured, tmp_path)
    wrong = {**deployment.role_overrides[Role.WORKER], "kafka_password_file": wrong_password_file(tmp_path)}
    worker = Stack(deployment.settings, tmp_path, role_overrides={"worker": wrong}).worker(1).start()
    try:
        with pytest.raises(RuntimeError, match="exited during start-up") as raised:
            worker.wait_ready()
        assert "cannot start: Kafka at" in str(raised.value)
        assert "authentication failed" in str(raised.value)
        assert worker.process is not None and worker.process.returncode == 2
        assert "not-the-password" not in worker.log_path.read_text()
    finally:
        worker.stop()


def connect_without_tls(bootstrap_servers: str) -> None:
    """One client that tries for a second, then is gone (it would go on retrying)."""
    plaintext = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    with pytest.raises(KafkaException):
        plaintext.list_topics(timeout=1)


def test_a_secured_worker_makes_no_connection_but_its_own(kafka_secured: SecuredKafka, tmp_path: Path) -> None:
    """Faust's own Kafka client is off in the worker (LedgerBootStrategy): were it on, it would
    connect without TLS or SASL and the broker would log a failed authentication."""
    server_log = kafka_secured.cluster.nodes[0].data_dir / "server.log"

    def failed_authentications() -> int:
        return server_log.read_text(errors="replace").count(FAILED_AUTHENTICATION)

    before = failed_authentications()
    connect_without_tls(kafka_secured.cluster.bootstrap_servers)
    assert failed_authentications() > before, "the broker logs a client that does not speak TLS"

    deployment = secured_deployment(kafka_secured, tmp_path)
    before = failed_authentications()
    stack = deployment.stack(tmp_path)
    worker = stack.worker(1).start()
    try:
        worker.wait_ready()
        assert failed_authentications() == before
    finally:
        stack.stop_all()
    assert failed_authentications() == before
    for path in (*(tmp_path / "logs").glob("*.log"), server_log):
        text = path.read_text(errors="replace")
        for user in (*(role.value for role in Role), kafka.ADMIN_USER, kafka.BROKER_USER):
            assert kafka_secured.cluster.password_file(user).read_text().strip() not in text, (path, user)
