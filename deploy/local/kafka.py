"""Run a real Apache Kafka broker (KRaft mode) from Maven Central jars, on 127.0.0.1.

    python -m deploy.local.kafka start [--brokers 1|3] [--name dev] [--secured [--users a,b]]
    python -m deploy.local.kafka stop  [--name dev] [--wipe]
    python -m deploy.local.kafka status [--name dev]

Jars are resolved once by `mvn` into `.cache/kafka/<version>/lib`; broker data, logs
and PID files live in `.run/kafka/<name>/`. A single node is a combined
broker+controller whose internal topics have replication factor 1, so transactions
work; `--brokers 3` starts three combined nodes (RF 3, min.insync.replicas 2) for
failover tests. This module imports nothing from the project so that it can start
a broker before anything else is installed.

Secured mode (`--secured`, `start(secured=True)`): the same one or three nodes, with
    * clients on a SASL_SSL listener (the broker port), SCRAM-SHA-512 over TLS;
    * replication between brokers on that same listener, as the user `broker`, whose SCRAM
      credential is written into the metadata log when the storage is formatted (KRaft
      reads credentials from the metadata log, so they must be there before the brokers
      talk);
    * the controller listener on SASL_SSL too, with SASL/PLAIN for the user `broker`
      (KRaft controllers cannot use SCRAM: they authenticate before they have read the
      metadata log that holds the credentials);
    * TLS from a CA and a broker certificate generated for the cluster (deploy/local/security.py);
    * ACLs enforced by KRaft's StandardAuthorizer with allow.everyone.if.no.acl.found=false:
      nobody may do anything no ACL allows, except the super users `broker` and `admin`.
`admin` (created at format time too) is the operator: it creates topics, users and ACLs.
Other users are added with `add_users` (`--users`): SCRAM credentials upserted by `admin`.
Passwords and keys live in `.run/kafka/<name>/secrets/` (0600) and are never printed.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploy.local import security

KAFKA_VERSION = "4.1.1"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = PROJECT_ROOT / "deploy" / "local"
CACHE_DIR = PROJECT_ROOT / ".cache"
RUN_DIR = PROJECT_ROOT / ".run" / "kafka"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
HEAP_PER_BROKER_MB = {1: 1024, 3: 512}
SCRAM_MECHANISM = "SCRAM-SHA-512"
BROKER_USER = "broker"  # replication and controller traffic; a super user
ADMIN_USER = "admin"  # the operator: topics, users, ACLs; a super user
USER_READY_TIMEOUT_S = 30.0
MODE_FILE = "mode"  # "plaintext" or "secured": how the cluster was formatted


@dataclasses.dataclass(frozen=True)
class Node:
    node_id: int
    broker_port: int
    controller_port: int
    data_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"


@dataclasses.dataclass(frozen=True)
class Cluster:
    name: str
    nodes: tuple[Node, ...]
    secured: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.broker_port}" for node in self.nodes)

    @property
    def root(self) -> Path:
        return RUN_DIR / self.name

    @property
    def secrets_dir(self) -> Path:
        return self.root / security.SECRETS_DIR_NAME

    @property
    def ca_file(self) -> Path:
        return self.secrets_dir / "ca.pem"

    def password_file(self, user: str) -> Path:
        """The file holding `user`'s password (created with the user)."""
        return self.secrets_dir / f"{user}.password"

    def client_config(self, user: str = ADMIN_USER) -> dict[str, Any]:
        """librdkafka settings for a client of this cluster, as `user` when secured."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.secured:
            config.update(
                {
                    "security.protocol": "SASL_SSL",
                    "sasl.mechanisms": SCRAM_MECHANISM,
                    "sasl.username": user,
                    "sasl.password": security.password(self.secrets_dir, user),
                    "ssl.ca.location": str(self.ca_file),
                }
            )
        return config


def cluster_layout(*, name: str, brokers: int, base_port: int, secured: bool = False) -> Cluster:
    """Ports: broker i listens on base_port+i, its controller on base_port+100+i."""
    assert brokers in (1, 3), "a single node or a three-node quorum"
    root = RUN_DIR / name
    nodes = tuple(
        Node(
            node_id=index + 1,
            broker_port=base_port + index,
            controller_port=base_port + 100 + index,
            data_dir=root / f"node-{index + 1}",
        )
        for index in range(brokers)
    )
    return Cluster(name=name, nodes=nodes, secured=secured)


def kafka_lib_dir(version: str = KAFKA_VERSION) -> Path:
    """Resolve the broker jars with Maven once; later calls return the cached folder."""
    lib_dir = CACHE_DIR / "kafka" / version / "lib"
    marker = lib_dir / ".complete"
    if marker.exists():
        return lib_dir
    if shutil.which("mvn") is None:
        raise RuntimeError("mvn is not installed: it is needed once to fetch the Kafka jars")
    lib_dir.mkdir(parents=True, exist_ok=True)
    command = [
        "mvn",
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(LOCAL_DIR / "pom.xml"),
        f"-Dkafka.version={version}",
        f"-Dmaven.repo.local={CACHE_DIR / 'm2'}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib_dir}",
    ]
    print(f"fetching Kafka {version} jars from Maven Central ...", file=sys.stderr)
    # Maven 3.8 resets the terminal's colours (ESC[0m) on exit even with -B -q -Dstyle.color=never.
    maven_options = f"{os.environ.get('MAVEN_OPTS', '')} -Djansi.noreset=true".strip()
    subprocess.run(command, check=True, env={**os.environ, "MAVEN_OPTS": maven_options})
    marker.write_text(version)
    return lib_dir


def server_properties(cluster: Cluster, node: Node) -> str:
    replication = len(cluster.nodes)
    min_insync = 1 if replication == 1 else 2
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster.nodes)
    settings = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": node.data_dir / "log",
        # Topics are created by topologies/, never implicitly by a typo'd producer.
        "auto.create.topics.enable": "false",
        "num.partitions": 8,
        "default.replication.factor": replication,
        "min.insync.replicas": min_insync,
        "offsets.topic.replication.factor": replication,
        "offsets.topic.num.partitions": 16,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_insync,
        "transaction.state.log.num.partitions": 16,
        "unclean.leader.election.enable": "false",
        # A worker killed mid-transaction blocks readers (read_committed) until its
        # transaction is aborted: look for timed-out transactions every second.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000,
        # Let workers use short sessions so that a killed worker is noticed quickly.
        "group.min.session.timeout.ms": 1000,
        "group.initial.rebalance.delay.ms": 0,
        # A broker that dies is fenced, and its partitions led elsewhere, within seconds.
        "broker.session.timeout.ms": 4000,
        "broker.heartbeat.interval.ms": 500,
        "log.retention.check.interval.ms": 60000,
    }
    if cluster.secured:
        settings.update(_security_properties(cluster, node))
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _security_properties(cluster: Cluster, node: Node) -> dict[str, object]:
    """SASL_SSL everywhere, SCRAM for clients and replication, PLAIN for the controllers,
    StandardAuthorizer with deny by default. Holds passwords: the file is written 0600."""
    folder = cluster.secrets_dir
    broker_password = security.password(folder, BROKER_USER)
    scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain_login = "org.apache.kafka.common.security.plain.PlainLoginModule"
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{node.broker_port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL",
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
            f'{scram_login} required username="{BROKER_USER}" password="{broker_password}";'
        ),
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": (
            f'{plain_login} required username="{BROKER_USER}" password="{broker_password}" '
            f'user_{BROKER_USER}="{broker_password}";'
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": folder / "broker.pem",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": folder / "ca.pem",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.client.auth": "none",  # clients authenticate with SASL, not certificates
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{BROKER_USER};User:{ADMIN_USER}",
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); look at its state.
    return process_state(pid) not in (None, "Z")


def _read_pid(node: Node) -> int | None:
    try:
        pid = int(node.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _refuse_stopped(cluster: Cluster) -> None:
    """A broker of this cluster that is running but stopped (SIGSTOP: a fault test's frozen broker,
    left so by a test run killed mid-freeze) would be reused and never answer; say so at once.
    It is left as it is: whoever froze it may still mean to resume it."""
    for node in cluster.nodes:
        pid = _read_pid(node)
        if pid is not None and process_state(pid) == "T":
            raise RuntimeError(
                f"broker {node.node_id} (pid {pid}) is stopped (SIGSTOP, e.g. by a fault test interrupted "
                f"while it froze the broker): resume it with `kill -CONT {pid}`, or stop the cluster "
                f"with `python -m deploy.local.kafka stop --name {cluster.name}`"
            )


def process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, T, Z, ...), or None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _port_free(port: int) -> bool:
    """Whether a server could bind the port now: binding as the JVM does (SO_REUSEADDR) also
    fails on a port that a client connection holds, which merely connecting would miss."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _java_command(lib_dir: Path, node: Node, main_class: str, *args: str, heap_mb: int) -> list[str]:
    return [
        os.environ.get("JAVA", "java"),
        f"-Xms{min(256, heap_mb)}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={node.data_dir}",
        f"-Dlog4j2.configurationFile={LOCAL_DIR / 'log4j2.properties'}",
        "-cp",
        f"{lib_dir}/*",
        main_class,
        *args,
    ]


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_storage(lib_dir: Path, cluster: Cluster, cluster_id: str) -> None:
    for node in cluster.nodes:
        if (node.data_dir / "log" / "meta.properties").exists():
            continue
        node.data_dir.mkdir(parents=True, exist_ok=True)
        credentials = []
        if cluster.secured:
            for user in (BROKER_USER, ADMIN_USER):
                secret = security.password(cluster.secrets_dir, user)
                credentials += ["--add-scram", security.scram_credential(SCRAM_MECHANISM, user, secret)]
        subprocess.run(
            _java_command(
                lib_dir,
                node,
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                # "=" keeps an id that starts with "-" (1 in 64 of them) from reading as an option.
                f"--cluster-id={cluster_id}",
                "-c",
                str(node.data_dir / "server.properties"),
                *credentials,
                heap_mb=256,
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )


def start(
    *,
    name: str = "dev",
    brokers: int = 1,
    base_port: int = 9092,
    version: str = KAFKA_VERSION,
    secured: bool = False,
    broker_overrides: Mapping[str, object] | None = None,
) -> Cluster:
    """Start (or reuse) a local cluster and wait until every broker serves metadata.
    `broker_overrides` replace server.properties entries (e.g. Kafka's own defaults for the
    timeouts the local clusters shorten, to measure fail-over as a stock broker gives it)."""
    cluster = cluster_layout(name=name, brokers=brokers, base_port=base_port, secured=secured)
    _check_mode(cluster)
    _refuse_stopped(cluster)
    if all(_read_pid(node) is not None for node in cluster.nodes):
        wait_ready(cluster)
        return cluster
    for node in cluster.nodes:
        if _read_pid(node) is not None:
            continue
        for port in (node.broker_port, node.controller_port):
            if not _port_free(port):
                raise RuntimeError(
                    f"port {port} on 127.0.0.1 is in use (by a server or a client socket); choose another base port"
                )
    lib_dir = kafka_lib_dir(version)
    cluster.root.mkdir(parents=True, exist_ok=True)
    cluster_id_file = cluster.root / "cluster.id"
    if not cluster_id_file.exists():
        cluster_id_file.write_text(new_cluster_id())
        (cluster.root / MODE_FILE).write_text(_mode(cluster))
    if cluster.secured:
        security.ensure_certificates(cluster.secrets_dir)
    for node in cluster.nodes:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        # 0600: in secured mode the file holds the broker's password.
        properties = server_properties(cluster, node) + "".join(
            f"{key}={value}\n" for key, value in (broker_overrides or {}).items()
        )
        security.write_secret(node.data_dir / "server.properties", properties.encode())
    format_storage(lib_dir, cluster, cluster_id_file.read_text().strip())
    heap_mb = HEAP_PER_BROKER_MB[brokers]
    for node in cluster.nodes:
        if _read_pid(node) is not None:
            continue
        with open(node.data_dir / "stdout.log", "ab") as log:
            process = subprocess.Popen(
                _java_command(lib_dir, node, "kafka.Kafka", str(node.data_dir / "server.properties"), heap_mb=heap_mb),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the shell that started it; stopped by PID
            )
        node.pid_file.write_text(str(process.pid))
    wait_ready(cluster)
    return cluster


def _mode(cluster: Cluster) -> str:
    return "secured" if cluster.secured else "plaintext"


def _check_mode(cluster: Cluster) -> None:
    """A cluster keeps the mode it was formatted in: its listeners and credentials depend on it."""
    if not (cluster.root / "cluster.id").exists():
        return  # a new cluster
    mode_file = cluster.root / MODE_FILE
    existing = mode_file.read_text().strip() if mode_file.exists() else "plaintext"  # made before modes existed
    if existing != _mode(cluster):
        raise RuntimeError(
            f"cluster {cluster.name!r} was created {existing}, not {_mode(cluster)}: "
            f"stop it with --wipe first (python -m deploy.local.kafka stop --name {cluster.name} --wipe)"
        )


def add_users(cluster: Cluster, users: list[str]) -> None:
    """Create (or keep) a SCRAM credential for each user, with a generated password in
    `cluster.password_file(user)`; returns once each user can log in."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    if not cluster.secured:
        raise ValueError(f"cluster {cluster.name!r} is not secured: it has no users")
    admin = AdminClient(cluster.client_config(ADMIN_USER))
    upsertions: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            user,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, security.SCRAM_ITERATIONS),
            security.password(cluster.secrets_dir, user).encode(),
        )
        for user in users
    ]
    for future in admin.alter_user_scram_credentials(upsertions, request_timeout=USER_READY_TIMEOUT_S).values():
        future.result()
    for user in users:
        _wait_until_login(cluster, user)


def _wait_until_login(cluster: Cluster, user: str) -> None:
    """Credentials reach every broker through the metadata log: wait until each accepts them."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + USER_READY_TIMEOUT_S
    for node in cluster.nodes:
        config = {**cluster.client_config(user), "bootstrap.servers": f"127.0.0.1:{node.broker_port}", "log_level": 0}
        while True:
            try:
                AdminClient(config).list_topics(timeout=2)
                break
            except Exception as error:  # not there yet; the deadline bounds the wait
                if time.monotonic() > deadline:
                    raise TimeoutError(f"user {user!r} cannot log in to broker {node.node_id}: {error}") from error
                time.sleep(0.1)


def wait_ready(cluster: Cluster, timeout_s: float = START_TIMEOUT_S) -> None:
    """Ready means: every broker is registered and answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline and not all(_port_open(node.broker_port) for node in cluster.nodes):
        _raise_if_exited(cluster)
        time.sleep(0.2)
    # log_level 0: connection attempts before the listener is up are expected, not news.
    admin = AdminClient({**cluster.client_config(ADMIN_USER), "log_level": 0})
    while time.monotonic() < deadline:
        _raise_if_exited(cluster)
        try:
            metadata = admin.list_topics(timeout=2)
            if len(metadata.brokers) == len(cluster.nodes):
                return
        except Exception as error:  # noqa: BLE001 - any failure here means "not ready yet"
            last_error = error
        time.sleep(0.25)
    raise TimeoutError(f"Kafka at {cluster.bootstrap_servers} not ready after {timeout_s}s: {last_error}")


def _raise_if_exited(cluster: Cluster) -> None:
    for node in cluster.nodes:
        if node.pid_file.exists() and _read_pid(node) is None:
            # The broker logs to server.log (deploy/local/log4j2.properties); the JVM's own
            # complaints, if any, are in stdout.log.
            tails = [
                f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:]
                for path in (node.data_dir / "stdout.log", node.data_dir / "server.log")
                if path.exists()
            ]
            raise RuntimeError(f"broker {node.node_id} exited during start-up:\n" + "\n".join(tails))


def stop(*, name: str = "dev", wipe: bool = False) -> None:
    """Stop every broker of a cluster by PID (SIGTERM, then SIGKILL after a grace period)."""
    root = RUN_DIR / name
    pid_files = sorted(root.glob("node-*/broker.pid"))
    pids = []
    for pid_file in pid_files:
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            continue
        if _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for pid in pids:
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    for pid_file in pid_files:
        pid_file.unlink(missing_ok=True)
    if wipe:
        shutil.rmtree(root, ignore_errors=True)


def kill_node(cluster: Cluster, node_id: int) -> None:
    """kill -9 one broker (failover tests)."""
    node = cluster.nodes[node_id - 1]
    pid = _read_pid(node)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid):
            time.sleep(0.05)


def restart_node(cluster: Cluster, node_id: int, version: str = KAFKA_VERSION) -> None:
    node = cluster.nodes[node_id - 1]
    if _read_pid(node) is not None:
        return
    lib_dir = kafka_lib_dir(version)
    with open(node.data_dir / "stdout.log", "ab") as log:
        process = subprocess.Popen(
            _java_command(
                lib_dir,
                node,
                "kafka.Kafka",
                str(node.data_dir / "server.properties"),
                heap_mb=HEAP_PER_BROKER_MB[len(cluster.nodes)],
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    node.pid_file.write_text(str(process.pid))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status", "fetch"])
    parser.add_argument("--name", default="dev", help="cluster name: its data lives in .run/kafka/<name>")
    parser.add_argument("--brokers", type=int, default=1, choices=[1, 3])
    parser.add_argument("--base-port", type=int, default=9092)
    parser.add_argument("--wipe", action="store_true", help="with stop: delete the cluster's data")
    parser.add_argument("--version", default=KAFKA_VERSION)
    parser.add_argument("--secured", action="store_true", help="SASL_SSL (SCRAM-SHA-512) and ACLs, deny by default")
    parser.add_argument("--users", default="", help="with --secured: comma-separated users to create besides admin")
    args = parser.parse_args(argv)
    if args.action == "fetch":
        print(kafka_lib_dir(args.version))
    elif args.action == "start":
        started_at = time.monotonic()
        cluster = start(
            name=args.name, brokers=args.brokers, base_port=args.base_port, version=args.version, secured=args.secured
        )
        users = [user for user in args.users.split(",") if user]
        if users:
            add_users(cluster, users)
        print(f"Kafka {args.version} ready at {cluster.bootstrap_servers} ({time.monotonic() - started_at:.1f}s)")
        if cluster.secured:
            print(f"SASL_SSL, SCRAM-SHA-512; CA {cluster.ca_file}; passwords in {cluster.secrets_dir}/<user>.password")
    elif args.action == "stop":
        stop(name=args.name, wipe=args.wipe)
    else:
        root = RUN_DIR / args.name
        for pid_file in sorted(root.glob("node-*/broker.pid")):
            pid = int(pid_file.read_text().strip())
            print(f"{pid_file.parent.name}: pid {pid} {'running' if _pid_alive(pid) else 'dead'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
