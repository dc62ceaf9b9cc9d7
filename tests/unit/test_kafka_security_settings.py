"""The Kafka security settings and what kafka_config makes of them; the ACL declaration's
names against the ones the processes use; `streamwallet kafka acls`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from foundation.clients import LIBRDKAFKA_LOGGER, KafkaAccessError, kafka_config
from foundation.settings import Settings
from streams.processor import consumer_group, transactional_id
from streamwallet.cli import main
from topologies import Topology
from topologies.access import ClientNames, Role, default_principals, grants, kafka_acls_commands

SECURED: dict[str, Any] = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_username": "worker",
    "kafka_password": "pa55word",
}


def test_plaintext_configuration_is_only_the_brokers_and_the_logger() -> None:
    assert kafka_config(Settings(bootstrap_servers="b:9092")) == {
        "bootstrap.servers": "b:9092",
        "logger": LIBRDKAFKA_LOGGER,
    }


def test_sasl_ssl_configuration(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    config = kafka_config(Settings(bootstrap_servers="b:9093", kafka_ca_file=ca, **SECURED), **{"acks": "all"})
    assert config == {
        "bootstrap.servers": "b:9093",
        "logger": LIBRDKAFKA_LOGGER,
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "worker",
        "sasl.password": "pa55word",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca),
        "acks": "all",
    }


def test_the_password_file_is_read_when_a_client_is_configured(tmp_path: Path) -> None:
    secret = tmp_path / "worker.password"
    secret.write_text("from-a-file\n")
    settings = Settings(**{**SECURED, "kafka_password": "", "kafka_password_file": secret})
    assert kafka_config(settings)["sasl.password"] == "from-a-file"
    secret.unlink()
    with pytest.raises(KafkaAccessError, match=r"STREAMWALLET_KAFKA_PASSWORD_FILE=.* cannot be read"):
        kafka_config(settings)


def test_settings_from_the_environment_round_trip(tmp_path: Path) -> None:
    environment = {
        "STREAMWALLET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMWALLET_KAFKA_USERNAME": "query",
        "STREAMWALLET_KAFKA_PASSWORD_FILE": str(tmp_path / "query.password"),
        "STREAMWALLET_KAFKA_CA_FILE": str(tmp_path / "ca.pem"),
    }
    settings = Settings.from_environment(environment)
    assert settings.kafka_password_file == tmp_path / "query.password"
    assert settings.kafka_ca_file == tmp_path / "ca.pem"
    assert Settings.from_environment(settings.environment()) == settings
    plain = Settings.from_environment({})
    assert plain.environment()["STREAMWALLET_KAFKA_CA_FILE"] == ""
    assert Settings.from_environment(plain.environment()).kafka_ca_file is None


def test_the_password_is_masked_in_repr() -> None:
    settings = Settings(**SECURED)
    assert "pa55word" not in repr(settings)
    assert "kafka_password='***'" in repr(settings)
    assert "kafka_password=''" in repr(Settings())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "KAFKA_SECURITY_PROTOCOL='SASL_PLAINTEXT': expected one of"),
        ({"kafka_security_protocol": "SSL"}, "expected one of"),
        ({**SECURED, "kafka_sasl_mechanism": "GSSAPI"}, "KAFKA_SASL_MECHANISM='GSSAPI'"),
        ({**SECURED, "kafka_username": ""}, "needs STREAMWALLET_KAFKA_USERNAME"),
        ({**SECURED, "kafka_password": ""}, "exactly one of STREAMWALLET_KAFKA_PASSWORD and"),
        ({**SECURED, "kafka_password_file": Path("/p")}, "exactly one of"),
        ({"kafka_username": "worker"}, "PLAINTEXT, which would ignore them"),
        ({"kafka_ca_file": Path("/ca.pem")}, "PLAINTEXT, which would ignore them"),
    ],
)
def test_inconsistent_security_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**fields)  # type: ignore[arg-type]


def test_the_declared_names_are_the_ones_the_worker_uses() -> None:
    settings = Settings(topic_prefix="wallet", worker_id="worker-3")
    names = ClientNames("wallet")
    assert consumer_group(settings) == names.ledger_group
    assert transactional_id(settings).startswith(names.transactional_id_prefix)


def test_every_role_gets_its_own_grants() -> None:
    declared = grants(Topology(prefix="wallet"), default_principals("wallet"))
    assert {grant.principal for grant in declared} == {f"User:wallet-{role.value}" for role in Role}
    event_consumer = [grant for grant in declared if grant.role is Role.EVENT_CONSUMER]
    lines = kafka_acls_commands(event_consumer, bootstrap_servers="b")
    assert lines == [
        "kafka-acls.sh --bootstrap-server b --command-config admin.properties --add "
        "--allow-principal User:wallet-event-consumer --operation Read --topic wallet.events "
        "--resource-pattern-type literal",
        "kafka-acls.sh --bootstrap-server b --command-config admin.properties --add "
        "--allow-principal User:wallet-event-consumer --operation Read --group wallet.event-consumers. "
        "--resource-pattern-type prefixed",
    ]


def test_the_cli_prints_the_acls_with_the_principals_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMWALLET_TOPIC_PREFIX", "wallet")
    assert main(["kafka", "acls", "--principal", "query=User:reader"]) == 0
    printed = capsys.readouterr().out
    assert "# query: User:reader" in printed and "--allow-principal User:reader --operation Write" in printed
    assert printed.count("kafka-acls.sh") == len(grants(Topology(prefix="wallet"), default_principals("wallet")))
    assert main(["kafka", "acls", "--principal", "auditor=User:x"]) == 2
