"""The chart's values for what a deployment needs beyond Kafka: the gateway's credentials (Secrets
mounted as files, read by the real gateway code), its rate limits, the SQL endpoint's bounds, read
replicas of the query service, a ClickHouse server's password, the schema registry."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from foundation.api_keys import create_key, revoke_key
from foundation.settings import Settings
from gateway.authentication import Authenticator
from gateway.errors import ApiError, GatewayCode
from ledger.principals import Role
from tests.helm_chart import (
    FULLNAME,
    NAMESPACE,
    Helm,
    build_helm,
    containers,
    find_object,
    literal_environment,
    render_fails,
    render_objects,
)

GATEWAY = ("Deployment", f"{FULLNAME}-gateway")
SECRET_FILE_MODE = 0o440
ALL_SOURCES = (
    "gateway.auth.apiKeys.secret.name=wallet-api-keys",
    "gateway.auth.jwt.hs256Secret.name=wallet-jwt",
    "gateway.auth.jwt.publicKeySecret.name=idp-public-key",
    "gateway.auth.jwt.jwksSecret.name=idp-jwks",
)
SERVER = ("clickhouse.dsn=http://wallet@clickhouse:8123", "clickhouse.passwordSecret.name=clickhouse-wallet")


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return build_helm(tmp_path_factory.mktemp("helm-home"))


def configured(objects: list[dict[str, Any]], kind: str, name: str, **secrets: str) -> Settings:
    """The settings a workload's container starts with: the ConfigMap, then its own env, where
    `$(NAME)` is expanded as Kubernetes does, from `secrets` for the variables that come from a
    Secret."""
    environment: dict[str, str] = dict(find_object(objects, "ConfigMap", f"{FULLNAME}-config")["data"])
    for entry in containers(find_object(objects, kind, name))[0].get("env", []):
        if "value" in entry:
            environment[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: environment[m.group(1)], entry["value"])
        elif "secretKeyRef" in entry["valueFrom"]:
            environment[entry["name"]] = secrets[entry["name"]]
    return Settings.from_environment({**environment, "STREAMWALLET_WORKER_ID": "worker-0"})


def secret_mounts(workload: dict[str, Any]) -> dict[str, tuple[str, str, str, int]]:
    """mount path -> (Secret, key, file name, mode) of a pod's Secret volumes."""
    pod = workload["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume["secret"] for volume in pod["volumes"] if "secret" in volume}
    mounts: dict[str, tuple[str, str, str, int]] = {}
    for mount in containers(workload)[0]["volumeMounts"]:
        if mount["name"] in volumes:
            assert mount.get("readOnly") is True and "subPath" not in mount, mount
            secret = volumes[mount["name"]]
            [item] = secret["items"]
            mounts[mount["mountPath"]] = (secret["secretName"], item["key"], item["path"], secret["defaultMode"])
    return mounts


# -- the gateway's credentials -------------------------------------------------------------------


def test_a_gateway_without_a_credential_source_is_refused(helm: Helm) -> None:
    error = render_fails(helm, authenticated=False)
    assert "gateway.auth: no credential source" in error
    assert "allowNoCredentialSource" in error
    objects = render_objects(helm, "gateway.auth.allowNoCredentialSource=true", authenticated=False)
    gateway = find_object(objects, *GATEWAY)
    assert secret_mounts(gateway) == {}
    settings = configured(objects, *GATEWAY)
    assert (settings.auth_jwt_hs256_secret_file, settings.auth_jwt_public_key_file, settings.auth_jwks_file) == (
        None,
        None,
        None,
    )
    # The store's path is set all the same: no file there is an empty store (every request 401).
    assert str(settings.auth_api_keys_file) == "/etc/streamwallet/auth/api-keys/api-keys.json"


def test_each_credential_source_is_a_secret_mounted_where_its_setting_points(helm: Helm) -> None:
    objects = render_objects(helm, *ALL_SOURCES, authenticated=False)
    gateway = find_object(objects, *GATEWAY)
    settings = configured(objects, *GATEWAY)
    mounts = secret_mounts(gateway)
    expected = {
        settings.auth_api_keys_file: ("wallet-api-keys", "api-keys.json"),
        settings.auth_jwt_hs256_secret_file: ("wallet-jwt", "secret"),
        settings.auth_jwt_public_key_file: ("idp-public-key", "public.pem"),
        settings.auth_jwks_file: ("idp-jwks", "jwks.json"),
    }
    for path, (secret, key) in expected.items():
        assert path is not None
        assert mounts[str(path.parent)] == (secret, key, path.name, SECRET_FILE_MODE)
    # The query service and the workers' web ports verify the same credentials (sinks/access.py,
    # streams/access.py): they mount the same files.
    for component in ("query", "worker"):
        workload = find_object(objects, "StatefulSet", f"{FULLNAME}-{component}")
        assert secret_mounts(workload) == mounts, component
        deployed = configured(objects, "StatefulSet", f"{FULLNAME}-{component}")
        assert deployed.auth_api_keys_file == settings.auth_api_keys_file, component
    # Only they and the gateway hold them; no credential is ever a variable.
    holders = {GATEWAY[1], f"{FULLNAME}-query", f"{FULLNAME}-query-read", f"{FULLNAME}-worker"}
    for document in objects:
        if document["kind"] == "Job" or document["metadata"]["name"] not in holders:
            assert "/etc/streamwallet/auth" not in json.dumps(document)
    assert not [entry for entry in containers(gateway)[0]["env"] if "valueFrom" in entry]


def kubelet_secret(mount: Path, files: dict[str, bytes], *, generation: int) -> None:
    """Write a Secret volume the way the kubelet does: the files in a timestamped folder, `..data`
    pointing at it, each file a link through `..data`; an update swaps `..data` atomically."""
    mount.mkdir(parents=True, exist_ok=True)
    folder = mount / f"..2030_01_01_00_00_{generation:02d}"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
        if not (mount / name).is_symlink():
            (mount / name).symlink_to(Path("..data") / name)
    (mount / "..data_tmp").symlink_to(folder.name)
    os.replace(mount / "..data_tmp", mount / "..data")


def token(secret: bytes, settings: Settings, roles: list[str]) -> str:
    claims = {
        "sub": "alice",
        "aud": settings.auth_jwt_audience,
        "iss": settings.auth_jwt_issuer,
        "exp": int(time.time()) + 300,
        settings.auth_jwt_roles_claim: roles,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def test_the_gateway_reads_the_mounted_secrets_and_sees_them_change(helm: Helm, tmp_path: Path) -> None:
    """The real Authenticator on the files where the chart's settings point (rebased into a
    folder laid out as the kubelet lays out Secret volumes): an API key and an HS256 token verify,
    the public key and JWKS load, and a key revoked in an updated Secret is refused at once."""
    objects = render_objects(
        helm, *ALL_SOURCES, "gateway.auth.jwt.audience=wallet-api", "gateway.auth.jwt.rolesClaim=wallet_roles"
    )
    deployed = configured(objects, *GATEWAY)

    def rebased(path: Path | None) -> Path:
        assert path is not None
        return tmp_path / "pod" / path.relative_to("/")

    store = tmp_path / "made-by-the-cli.json"
    key, record = create_key(store, name="payments", roles=[Role.OPERATOR], now_ms=1)
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwks = {"keys": [{**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key())), "kid": "k1"}]}
    hs256 = b"a shared secret of at least thirty-two bytes"
    contents = {
        deployed.auth_api_keys_file: store.read_bytes(),
        deployed.auth_jwt_hs256_secret_file: hs256 + b"\n",
        deployed.auth_jwt_public_key_file: public_pem,
        deployed.auth_jwks_file: json.dumps(jwks).encode(),
    }
    for path, content in contents.items():
        assert path is not None
        kubelet_secret(rebased(path).parent, {path.name: content}, generation=0)
    settings = Settings.from_environment(
        {},
        auth_api_keys_file=rebased(deployed.auth_api_keys_file),
        auth_jwt_hs256_secret_file=rebased(deployed.auth_jwt_hs256_secret_file),
        auth_jwt_public_key_file=rebased(deployed.auth_jwt_public_key_file),
        auth_jwks_file=rebased(deployed.auth_jwks_file),
        auth_jwt_audience=deployed.auth_jwt_audience,
        auth_jwt_issuer=deployed.auth_jwt_issuer,
        auth_jwt_roles_claim=deployed.auth_jwt_roles_claim,
    )
    authenticator = Authenticator(settings)
    assert authenticator.tokens.configured
    assert authenticator.principal([f"Bearer {key}"]).principal_id == "payments"
    principal = authenticator.principal([f"Bearer {token(hs256, settings, ['AUDITOR'])}"])
    assert (principal.principal_id, principal.roles) == ("alice", frozenset({Role.AUDITOR}))

    revoke_key(store, record.key_id, now_ms=2)
    api_keys_file = rebased(deployed.auth_api_keys_file)
    kubelet_secret(api_keys_file.parent, {api_keys_file.name: store.read_bytes()}, generation=1)
    with pytest.raises(ApiError) as refused:
        authenticator.principal([f"Bearer {key}"])
    assert refused.value.code is GatewayCode.CREDENTIAL_REVOKED


def test_the_gateways_token_expectations_and_rate_limits(helm: Helm) -> None:
    objects = render_objects(
        helm,
        "gateway.auth.jwt.audience=https://wallet.example.com/api",
        "gateway.auth.jwt.issuer=https://id.example.com/realms/wallet",
        "gateway.auth.jwt.rolesClaim=wallet_roles",
        "gateway.auth.jwt.clockSkewSeconds=30",
        "gateway.rateLimit.perSecond=20",
        "gateway.rateLimit.burst=40",
    )
    settings = configured(objects, *GATEWAY)
    assert settings.auth_jwt_audience == "https://wallet.example.com/api"
    assert settings.auth_jwt_issuer == "https://id.example.com/realms/wallet"
    assert (settings.auth_jwt_roles_claim, settings.auth_clock_skew_s) == ("wallet_roles", 30)
    assert (settings.gateway_rate_limit_per_s, settings.gateway_rate_limit_burst) == (20, 40)
    assert "STREAMWALLET_GATEWAY_RATE_LIMIT_PER_S" not in literal_environment(
        find_object(objects, "StatefulSet", f"{FULLNAME}-worker")
    )


# -- the query service ---------------------------------------------------------------------------


def test_the_sql_endpoints_bounds(helm: Helm) -> None:
    objects = render_objects(
        helm,
        "query.sql.queryTimeMsMax=10000",
        "query.sql.memoryBytesMax=536870912",
        "query.sql.resultRowsMax=100000",
        "query.sql.resultBytesMax=33554432",
        "query.sql.threadsMax=1",
    )
    settings = configured(objects, "StatefulSet", f"{FULLNAME}-query")
    assert (settings.sql_query_time_ms_max, settings.sql_memory_bytes_max) == (10_000, 536_870_912)
    assert (settings.sql_result_rows_max, settings.sql_result_bytes_max, settings.sql_threads_max) == (
        100_000,
        33_554_432,
        1,
    )
    assert settings.query_read_only is False


def test_a_clickhouse_password_comes_from_its_secret(helm: Helm) -> None:
    objects = render_objects(helm, *SERVER)
    config = find_object(objects, "ConfigMap", f"{FULLNAME}-config")["data"]
    assert config["STREAMWALLET_CLICKHOUSE_DSN"] == "http://wallet@clickhouse:8123"
    query = find_object(objects, "Deployment", f"{FULLNAME}-query")
    [from_secret] = [entry for entry in containers(query)[0]["env"] if "valueFrom" in entry]
    assert from_secret["valueFrom"] == {"secretKeyRef": {"name": "clickhouse-wallet", "key": "password"}}
    settings = configured(objects, "Deployment", f"{FULLNAME}-query", CLICKHOUSE_PASSWORD_FROM_SECRET="s3cr%40t")
    assert settings.clickhouse_dsn == "http://wallet:s3cr%40t@clickhouse:8123"


def test_read_replicas_serve_the_gateway_from_a_clickhouse_server(helm: Helm) -> None:
    objects = render_objects(
        helm,
        *SERVER,
        "query.readReplicas.enabled=true",
        "query.readReplicas.replicas=3",
        "query.readReplicas.clickhouseDsn=https://reader@clickhouse:8443",
        "query.readReplicas.clickhousePasswordSecret.name=clickhouse-reader",
    )
    replicas = find_object(objects, "Deployment", f"{FULLNAME}-query-read")
    assert replicas["spec"]["replicas"] == 3
    assert "volumeClaimTemplates" not in replicas["spec"]
    settings = configured(objects, "Deployment", f"{FULLNAME}-query-read", CLICKHOUSE_PASSWORD_FROM_SECRET="pw")
    assert settings.query_read_only is True
    assert settings.clickhouse_dsn == "https://reader:pw@clickhouse:8443"
    # The writing query pods keep the sink and their own user.
    writer = configured(objects, "Deployment", f"{FULLNAME}-query", CLICKHOUSE_PASSWORD_FROM_SECRET="pw")
    assert (writer.query_read_only, writer.clickhouse_dsn) == (False, "http://wallet:pw@clickhouse:8123")
    service = find_object(objects, "Service", f"{FULLNAME}-query-read")
    assert service["spec"]["selector"] == replicas["spec"]["selector"]["matchLabels"]
    assert replicas["spec"]["template"]["metadata"]["labels"].items() >= service["spec"]["selector"].items()
    find_object(objects, "PodDisruptionBudget", f"{FULLNAME}-query-read")
    gateway = configured(objects, *GATEWAY)
    assert gateway.query_url == f"http://{FULLNAME}-query-read.{NAMESPACE}.svc:8081"

    kept = render_objects(helm, *SERVER, "query.readReplicas.enabled=true", "query.readReplicas.serveGateway=false")
    assert configured(kept, *GATEWAY).query_url == f"http://{FULLNAME}-query.{NAMESPACE}.svc:8081"
    shared = configured(kept, "Deployment", f"{FULLNAME}-query-read", CLICKHOUSE_PASSWORD_FROM_SECRET="pw")
    assert shared.clickhouse_dsn == "http://wallet:pw@clickhouse:8123"


def test_the_schema_registry_and_framing_reach_every_process(helm: Helm) -> None:
    url = "http://apicurio.registry.svc:8080/apis/ccompat/v7"
    objects = render_objects(helm, f"schemaRegistry.url={url}", "schemaRegistry.framing=confluent")
    for kind, name in (("StatefulSet", f"{FULLNAME}-worker"), ("StatefulSet", f"{FULLNAME}-query"), GATEWAY):
        settings = configured(objects, kind, name)
        assert (settings.schema_registry_url, settings.avro_framing) == (url, "confluent")
    job = find_object(objects, "Job", f"{FULLNAME}-topics")
    assert literal_environment(job)["STREAMWALLET_AVRO_FRAMING"] == "confluent"
