"""The project's own KRaft storage formatting, on the real StorageTool."""

from __future__ import annotations

import shutil
import socket

import pytest

from deploy.local import kafka

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
