"""All configuration, in one typed object read from the environment.

Every field can be set by an environment variable named STREAMWALLET_<FIELD> in upper
case (STREAMWALLET_PARTITIONS=16). Defaults run everything locally on 127.0.0.1.
Secrets (the Kafka password) are masked in repr(); prefer STREAMWALLET_KAFKA_PASSWORD_FILE
to the password itself, so that it is not in the process environment.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import typing
from collections.abc import Mapping
from pathlib import Path

from ledger.limits import BATCH_TIMEOUT_MS_DEFAULT, DEDUP_ENTRIES_MAX_DEFAULT, DEDUP_RETENTION_MS_DEFAULT
from topologies import Topology

ENVIRONMENT_PREFIX = "STREAMWALLET_"
FETCH_MIN_BYTES_RANGE = (1, 100_000_000)  # what librdkafka accepts
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_SSL")  # SASL_PLAINTEXT would send passwords in clear
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
SECRET_FIELDS = frozenset({"kafka_password"})
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Authentication and rate limits at the gateway (README "Authentication"): the defaults.
AUTH_CLOCK_SKEW_S_DEFAULT = 60  # how far a token's exp, nbf and iat may be off our clock
GATEWAY_RATE_LIMIT_PER_S_DEFAULT = 100  # requests per second per principal, sustained
GATEWAY_RATE_LIMIT_BURST_DEFAULT = 200  # requests per principal at once, after a quiet spell


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    # Kafka
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "streamwallet"
    partitions: int = 8
    replication_factor: int = 1
    min_insync_replicas: int = 1
    # Kafka security: PLAINTEXT (local), or SASL_SSL with a user of the principal this process
    # runs as (topologies/access.py says which ACLs each principal needs).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: str = ""  # or, better, kafka_password_file; masked in repr()
    kafka_password_file: Path | None = None
    kafka_ca_file: Path | None = None  # PEM CA certificates the brokers' chain ends in; unset: the system's

    # Avro framing of the public records (commands, events, results, dead letters):
    # "single-object" (registry-free, the default) or "confluent" (magic byte 0 and a schema id
    # from the registry below, for registry-aware tools). Readers take both, whatever this says.
    avro_framing: str = "single-object"
    # A Confluent-compatible schema registry API, e.g. Apicurio's http://127.0.0.1:8085/apis/ccompat/v7
    # (`streamwallet registry start`); empty: none. Needed to write "confluent", and to read
    # Confluent-framed records written with schemas this code does not have.
    schema_registry_url: str = ""

    # Ledger workers
    worker_id: str = dataclasses.field(default_factory=socket.gethostname)
    data_dir: Path = PROJECT_ROOT / ".run" / "data"
    max_batch_messages: int = 2000  # consumed per transaction at most
    poll_timeout_ms: int = 20  # how long an idle worker waits for input before committing what it has
    # The input a worker's fetch waits for (up to 10 ms, streams/clients.py) before the broker
    # answers it. 1 answers each command as it lands: under a steady trickle, one fetch request
    # per arrival, which costs the broker CPU the worker shares (bench/README.md, stop 40).
    fetch_min_bytes: int = 16_384
    # A worker killed mid-transaction blocks the partition's next owner until the broker aborts
    # its transaction: this bounds fail-over. Transactions normally last milliseconds.
    transaction_timeout_ms: int = 3_000
    # How long before the group notices a dead worker (brokers refuse less than their
    # group.min.session.timeout.ms, 6 s by default; 3 s gives a ~4 s takeover, see README).
    session_timeout_ms: int = 6_000
    heartbeat_interval_ms: int = 1_000
    static_membership: bool = True  # a restarted worker takes back its partitions without a rebalance
    tick_interval_ms: int = 1_000  # time advances at least this often on an idle partition where something waits for it
    account_cache_entries: int = 100_000  # decoded records kept in memory per worker
    retention_ms: int = DEDUP_RETENTION_MS_DEFAULT
    retained_entries_max: int = DEDUP_ENTRIES_MAX_DEFAULT
    batch_timeout_ms: int = BATCH_TIMEOUT_MS_DEFAULT
    message_bytes_max: int = 1024 * 1024  # larger commands go to the dead-letter topic
    worker_web_host: str = "127.0.0.1"  # health, readiness and metrics of a worker (Faust web)
    worker_web_port: int = 6066
    # Every request to a worker's web port but /health and /ready needs a credential of an
    # OPERATOR, AUDITOR or ADMIN; always so when worker_web_host is not a loopback address.
    worker_web_auth_required: bool = False

    # Query side: "chdb:///<folder>" (embedded, the default) or "http://host:8123" (a server)
    clickhouse_dsn: str = f"chdb://{PROJECT_ROOT / '.run' / 'clickhouse'}"
    clickhouse_database: str = "streamwallet"
    sink_batch_events: int = 20_000
    sink_flush_interval_ms: int = 200
    query_host: str = "127.0.0.1"  # where the query service listens
    query_port: int = 8081
    query_url: str = "http://127.0.0.1:8081"  # where clients (the gateway) reach it
    # Every request but /health and /ready needs a credential (JWT or API key, as at the gateway);
    # always so when query_host is not a loopback address (sinks/access.py).
    query_auth_required: bool = False
    read_wait_ms_max: int = 5_000  # how long a read with min_seq waits for the view
    # Serve reads of a store another process writes (e.g. another query service's SQL
    # endpoint as STREAMWALLET_CLICKHOUSE_DSN): no sink, no migrations, no rebuild.
    query_read_only: bool = False

    # SQL for analysts on the query port (sinks/sql/): per query, at most; a client may ask for less
    sql_query_time_ms_max: int = 30_000
    sql_memory_bytes_max: int = 1024 * 1024 * 1024
    sql_result_rows_max: int = 1_000_000
    sql_result_bytes_max: int = 128 * 1024 * 1024  # also bounds the answer's size in its output format
    sql_threads_max: int = 2

    # HTTP gateway
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_result_timeout_ms: int = 10_000
    gateway_pending_max: int = 10_000  # commands awaiting their result at once
    # One token bucket per principal for every request it makes (submits and reads together):
    # past it, 429 RATE_LIMITED with Retry-After.
    gateway_rate_limit_per_s: int = GATEWAY_RATE_LIMIT_PER_S_DEFAULT
    gateway_rate_limit_burst: int = GATEWAY_RATE_LIMIT_BURST_DEFAULT

    # Authentication at the gateway: API keys and JWT bearer tokens (README "Authentication").
    # Secrets are read from files only, so they are never in the environment, in repr() or in logs.
    auth_api_keys_file: Path = PROJECT_ROOT / ".run" / "api-keys.json"  # `streamwallet apikeys` writes it (0600)
    auth_jwt_hs256_secret_file: Path | None = None  # HS256: a shared secret of at least 32 bytes
    auth_jwt_public_key_file: Path | None = None  # RS256 or ES256: the issuer's public key, PEM
    auth_jwks_file: Path | None = None  # RS256 or ES256: the issuer's keys as a JWKS document, chosen by `kid`
    auth_jwt_audience: str = "streamwallet"  # a token's `aud` must name it
    auth_jwt_issuer: str = "streamwallet"  # a token's `iss` must be it
    auth_jwt_roles_claim: str = "roles"  # the claim that lists the principal's roles
    auth_clock_skew_s: int = AUTH_CLOCK_SKEW_S_DEFAULT
    # The operator's CLI (streamwallet submit/load) acts as this principal (empty: cli:<OS user>)
    cli_principal_id: str = ""
    cli_principal_roles: str = "OPERATOR,ADMIN"

    def __post_init__(self) -> None:
        _check_kafka_security(self)
        if not FETCH_MIN_BYTES_RANGE[0] <= self.fetch_min_bytes <= FETCH_MIN_BYTES_RANGE[1]:
            raise ValueError(
                f"{ENVIRONMENT_PREFIX}FETCH_MIN_BYTES={self.fetch_min_bytes}: expected {FETCH_MIN_BYTES_RANGE[0]} "
                f"to {FETCH_MIN_BYTES_RANGE[1]} (librdkafka's fetch.min.bytes)"
            )

    def __repr__(self) -> str:
        """Like the dataclass's, with secrets shown as '***'."""
        shown = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            shown.append(f"{field.name}={repr('***') if field.name in SECRET_FIELDS and value else repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # Observability (foundation/observability.py; README "Observability")
    # "text" (a line a person reads) or "json" (one object per line, for a log collector)
    log_format: str = "text"
    # Traces: a request or command whose traceparent is sampled is always traced; one without
    # is traced with this probability (the gateway's requests, commands produced without one).
    trace_sample_ratio: float = 0.01
    trace_export_directory: str = ""  # finished spans as JSON lines, one file per process; empty: none
    otlp_traces_endpoint: str = ""  # an OTLP/HTTP collector, e.g. http://127.0.0.1:4318/v1/traces; empty: none

    def topology(self) -> Topology:
        """The topics this deployment uses, as configured."""
        return Topology(
            prefix=self.topic_prefix,
            partitions=self.partitions,
            replication_factor=self.replication_factor,
            min_insync_replicas=self.min_insync_replicas,
        )

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **overrides: typing.Any) -> Settings:
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, typing.Any] = {}
        for field in dataclasses.fields(cls):
            name = ENVIRONMENT_PREFIX + field.name.upper()
            if name in environ:
                values[field.name] = _parse(hints[field.name], environ[name], name)
        values.update(overrides)
        return cls(**values)

    def environment(self) -> dict[str, str]:
        """These settings as environment variables, for child processes."""
        return {
            ENVIRONMENT_PREFIX + field.name.upper(): _text(getattr(self, field.name))
            for field in dataclasses.fields(self)
        }


def _text(value: typing.Any) -> str:
    return "" if value is None else str(value)


def _check_kafka_security(settings: Settings) -> None:
    """Refuse settings that would connect differently from what they say (credentials that
    PLAINTEXT would silently ignore, two passwords, a mechanism librdkafka cannot use)."""
    prefix = ENVIRONMENT_PREFIX
    protocol = settings.kafka_security_protocol
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ValueError(f"{prefix}KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of {KAFKA_SECURITY_PROTOCOLS}")
    if settings.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
        raise ValueError(
            f"{prefix}KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism!r}: expected one of {KAFKA_SASL_MECHANISMS}"
        )
    has_password = bool(settings.kafka_password) or settings.kafka_password_file is not None
    if protocol == "PLAINTEXT":
        if settings.kafka_username or has_password or settings.kafka_ca_file is not None:
            raise ValueError(
                f"Kafka credentials or a CA file are set but {prefix}KAFKA_SECURITY_PROTOCOL is PLAINTEXT, "
                "which would ignore them: set it to SASL_SSL"
            )
        return
    if not settings.kafka_username:
        raise ValueError(f"{prefix}KAFKA_SECURITY_PROTOCOL={protocol} needs {prefix}KAFKA_USERNAME")
    if bool(settings.kafka_password) == (settings.kafka_password_file is not None):
        raise ValueError(
            f"{prefix}KAFKA_SECURITY_PROTOCOL={protocol} needs exactly one of {prefix}KAFKA_PASSWORD "
            f"and {prefix}KAFKA_PASSWORD_FILE"
        )


def _parse(hint: typing.Any, text: str, name: str) -> typing.Any:
    try:
        if hint is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is Path:
            return Path(text)
        if hint == Path | None:
            return Path(text) if text else None
        return text
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a valid {getattr(hint, '__name__', hint)}") from None
