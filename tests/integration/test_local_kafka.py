"""The project's own KRaft storage formatting, on the real StorageTool."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time

import pytest

from deploy.local import kafka
from foundation.settings import Settings
from streamwallet.exit_codes import ExitCode
from tests.conftest import TEST_KAFKA_PORT
from tests.support import run_cli

pytestmark = pytest.mark.kafka


def test_a_cluster_id_that_starts_with_a_dash_formats() -> None:
    # One random id in 64 starts with "-"; the tool once read such an id as an option and CI failed.
    cluster_id = "-X8xM2wxS4eTvrbkZzYSkg"
    cluster = kafka.cluster_layout(name="test-format", brokers=1, base_port=29500)
    shutil.rmtree(cluster.root, ignore_errors=True)
    try:
        node = cluster.nodes[0]
        node.data_dir.mkdir(parents=True)
        (node.data_dir / "server.properties").write_text(kafka.server_properties(cluster, node))
        kafka.format_storage(kafka.kafka_lib_dir(), cluster, cluster_id)
        meta = (node.data_dir / "log" / "meta.properties").read_text()
        assert f"cluster.id={cluster_id}" in meta
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)


def test_new_cluster_ids_are_sixteen_bytes_of_url_safe_base64() -> None:
    ids = {kafka.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(cluster_id) == 22 and "=" not in cluster_id for cluster_id in ids)


def test_a_port_held_by_a_client_socket_is_reported_before_the_broker_starts() -> None:
    # A bound socket that does not listen is what an outgoing connection looks like; a broker
    # started on its port would die with "Address already in use" in its own log.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 29700))
        try:
            with pytest.raises(RuntimeError, match=r"port 29700 on 127\.0\.0\.1 is in use"):
                kafka.start(name="test-busy", brokers=1, base_port=29700)
        finally:
            kafka.stop(name="test-busy", wipe=True)


def test_a_broker_left_stopped_is_reported_at_once_not_as_a_broker_that_never_answers(settings: Settings) -> None:
    # A test run killed while a fault test had frozen the broker (SIGSTOP) leaves it stopped;
    # the next start reused it and waited 90 s for "Broker transport failure". It must say what
    # it found, at once, and leave the broker as it is (someone may have frozen it on purpose).
    cluster = kafka.cluster_layout(name="test", brokers=1, base_port=TEST_KAFKA_PORT)
    pid = int(cluster.nodes[0].pid_file.read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        # The stop is asynchronous: every thread of the JVM stops, then the process reads "T".
        deadline = time.monotonic() + 10
        while kafka.process_state(pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.05)
        # Before, this start reused the stopped broker and raised only after 90 s, that the
        # broker was "not ready" (Broker transport failure).
        with pytest.raises(RuntimeError, match=rf"broker 1 \(pid {pid}\) is stopped"):
            kafka.start(name="test", brokers=1, base_port=TEST_KAFKA_PORT)
        operator = run_cli(settings, "kafka", "start", "--name", "test")  # the same, through the CLI
        assert operator.returncode == ExitCode.UNAVAILABLE, operator.stderr
        assert f"broker 1 (pid {pid}) is stopped" in operator.stderr and "Traceback" not in operator.stderr
    finally:
        os.kill(pid, signal.SIGCONT)
