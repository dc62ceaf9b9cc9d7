"""Run a real Apache Kafka broker (KRaft mode) from Maven Central jars, on 127.0.0.1.

    python -m deploy.local.kafka start [--brokers 1|3] [--name dev]
    python -m deploy.local.kafka stop  [--name dev]
    python -m deploy.local.kafka status [--name dev]

Jars are resolved once by `mvn` into `.cache/kafka/<version>/lib`; broker data, logs
and PID files live in `.run/kafka/<name>/`. A single node is a combined
broker+controller whose internal topics have replication factor 1, so transactions
work; `--brokers 3` starts three combined nodes (RF 3, min.insync.replicas 2) for
failover tests. This module imports nothing from the project so that it can start
a broker before anything else is installed.
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
from pathlib import Path

KAFKA_VERSION = "4.1.1"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = PROJECT_ROOT / "deploy" / "local"
CACHE_DIR = PROJECT_ROOT / ".cache"
RUN_DIR = PROJECT_ROOT / ".run" / "kafka"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
HEAP_PER_BROKER_MB = {1: 1024, 3: 512}


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

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.broker_port}" for node in self.nodes)

    @property
    def root(self) -> Path:
        return RUN_DIR / self.name


def cluster_layout(*, name: str, brokers: int, base_port: int) -> Cluster:
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
    return Cluster(name=name, nodes=nodes)


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
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); look at its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _read_pid(node: Node) -> int | None:
    try:
        pid = int(node.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


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
                heap_mb=256,
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )


def start(*, name: str = "dev", brokers: int = 1, base_port: int = 9092, version: str = KAFKA_VERSION) -> Cluster:
    """Start (or reuse) a local cluster and wait until every broker serves metadata."""
    cluster = cluster_layout(name=name, brokers=brokers, base_port=base_port)
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
    for node in cluster.nodes:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        (node.data_dir / "server.properties").write_text(server_properties(cluster, node))
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


def wait_ready(cluster: Cluster, timeout_s: float = START_TIMEOUT_S) -> None:
    """Ready means: every broker is registered and answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline and not all(_port_open(node.broker_port) for node in cluster.nodes):
        _raise_if_exited(cluster)
        time.sleep(0.2)
    # log_level 0: connection attempts before the listener is up are expected, not news.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers, "log_level": 0})
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
    args = parser.parse_args(argv)
    if args.action == "fetch":
        print(kafka_lib_dir(args.version))
    elif args.action == "start":
        started_at = time.monotonic()
        cluster = start(name=args.name, brokers=args.brokers, base_port=args.base_port, version=args.version)
        print(f"Kafka {args.version} ready at {cluster.bootstrap_servers} ({time.monotonic() - started_at:.1f}s)")
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
