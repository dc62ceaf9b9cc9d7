"""The three-broker mode failover tests use: it starts, a topic with replication factor
3 and min.insync.replicas 2 takes acks=all writes, and it survives losing one broker. In
plaintext and in secured mode (replication between the brokers then authenticates with
SCRAM over TLS, and the controllers with PLAIN over TLS)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from deploy.local import kafka

pytestmark = pytest.mark.kafka

BASE_PORT = int(os.environ.get("STREAMWALLET_TEST_KAFKA3_PORT", "29300"))  # below the ephemeral range, see conftest


# Both are soak variants: the default suite's broker-loss test (test_broker_loss.py) starts the
# same three-broker mode, writes with acks=all at RF 3 / min.insync.replicas 2 and loses a broker
# five times under the ledger; the secured single broker runs in the default suite (kill -9, end
# to end, ACLs). Each variant here starts three more brokers: half a minute to a minute.
@pytest.mark.slow
@pytest.mark.parametrize("secured", [False, True], ids=["plaintext", "secured"])
def test_three_broker_cluster_replicates_and_survives_one_broker(secured: bool) -> None:
    name = "test3-secured" if secured else "test3"
    cluster = kafka.start(name=name, brokers=3, base_port=BASE_PORT, secured=secured)
    try:
        topic = f"rf3-{uuid.uuid4().hex[:6]}"
        client = cluster.client_config()  # the admin user when secured
        admin = AdminClient(client)
        admin.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})])[topic].result()
        metadata = admin.list_topics(topic, timeout=10).topics[topic]
        assert all(len(partition.replicas) == 3 for partition in metadata.partitions.values())
        producer = Producer({**client, "acks": "all", "enable.idempotence": True})
        delivered: list[object] = []
        for index in range(30):
            producer.produce(topic, str(index).encode(), on_delivery=lambda error, _: delivered.append(error))
        producer.flush(30)
        kafka.kill_node(cluster, 3)  # two of three replicas remain: min.insync.replicas still met
        for index in range(30, 60):
            producer.produce(topic, str(index).encode(), on_delivery=lambda error, _: delivered.append(error))
        producer.flush(60)
        assert delivered == [None] * 60
        consumer = Consumer(
            {
                **client,
                "group.id": f"g-{topic}",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            }
        )
        consumer.assign([TopicPartition(topic, partition, 0) for partition in range(3)])
        values: list[Any] = []
        eof: set[int | None] = set()
        while len(eof) < 3:
            for message in consumer.consume(100, 1.0):
                if message.error() is None:
                    values.append(int(message.value() or b""))
                else:
                    eof.add(message.partition())
        consumer.close()
        assert sorted(values) == list(range(60))
    finally:
        kafka.stop(name=name, wipe=True)
