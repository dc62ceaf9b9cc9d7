"""The secured local cluster's secrets and broker configuration, without a broker: the
certificate chain, the files' modes, the salted SCRAM credential, the authorizer settings."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from deploy.local import kafka, security


def test_the_broker_certificate_is_signed_by_the_cluster_ca_and_names_the_host(tmp_path: Path) -> None:
    security.ensure_certificates(tmp_path / "secrets")
    folder = tmp_path / "secrets"
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    key_and_chain = (folder / "broker.pem").read_bytes()
    broker, chain_ca = x509.load_pem_x509_certificates(key_and_chain)
    assert chain_ca == ca
    broker.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.IPv4Address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(key_and_chain, password=None)  # PKCS#8, as Kafka's PEM keystore wants
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == broker.public_key().public_numbers()  # type: ignore[union-attr]
    assert b"BEGIN PRIVATE KEY" in key_and_chain
    assert not list(folder.glob("*key*")), "the CA's private key is not kept"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()} == {
        "ca.pem": 0o600,
        "broker.pem": 0o600,
    }


def test_passwords_are_generated_once_and_private(tmp_path: Path) -> None:
    first = security.password(tmp_path / "secrets", "worker")
    assert security.password(tmp_path / "secrets", "worker") == first
    assert security.password(tmp_path / "secrets", "query") != first
    assert len(first) >= 32
    assert (tmp_path / "secrets" / "worker.password").stat().st_mode & 0o777 == 0o600


def test_the_format_credential_carries_a_salted_password_not_the_password() -> None:
    argument = security.scram_credential("SCRAM-SHA-512", "admin", "secret-password")
    match = re.fullmatch(
        r'SCRAM-SHA-512=\[name=admin,iterations=(\d+),salt="([^"]+)",saltedpassword="([^"]+)"\]', argument
    )
    assert match, argument
    iterations, salt, salted = int(match[1]), base64.b64decode(match[2]), base64.b64decode(match[3])
    assert salted == hashlib.pbkdf2_hmac("sha512", b"secret-password", salt, iterations)
    assert "secret-password" not in argument


@pytest.fixture
def cluster() -> Iterator[kafka.Cluster]:
    cluster = kafka.cluster_layout(name="unit-secured-properties", brokers=3, base_port=39000, secured=True)
    yield cluster
    shutil.rmtree(cluster.root, ignore_errors=True)


def test_a_secured_broker_denies_by_default_and_speaks_only_sasl_ssl(cluster: kafka.Cluster) -> None:
    text = kafka.server_properties(cluster, cluster.nodes[1])
    properties = dict(line.split("=", 1) for line in text.splitlines())
    assert properties["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["super.users"] == "User:broker;User:admin"
    assert properties["listeners"] == "SASL_SSL://127.0.0.1:39001,CONTROLLER://127.0.0.1:39101"
    assert properties["listener.security.protocol.map"] == "CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL"
    assert properties["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert properties["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert properties["ssl.keystore.type"] == "PEM"
    assert "PLAINTEXT" not in text
    assert (
        kafka.server_properties(kafka.cluster_layout(name="x", brokers=1, base_port=39000), cluster.nodes[0]).count(
            "authorizer"
        )
        == 0
    )


def test_a_cluster_keeps_the_mode_it_was_created_in(cluster: kafka.Cluster) -> None:
    cluster.root.mkdir(parents=True)
    (cluster.root / "cluster.id").write_text(kafka.new_cluster_id())
    (cluster.root / kafka.MODE_FILE).write_text("plaintext")
    with pytest.raises(RuntimeError, match="was created plaintext, not secured: stop it with --wipe first"):
        kafka.start(name=cluster.name, brokers=3, base_port=39000, secured=True)


def test_a_plaintext_cluster_has_no_users() -> None:
    plaintext = kafka.cluster_layout(name="unit-plaintext", brokers=1, base_port=39000)
    with pytest.raises(ValueError, match="is not secured"):
        kafka.add_users(plaintext, ["worker"])
