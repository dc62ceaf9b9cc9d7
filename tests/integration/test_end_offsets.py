"""Where partitions end (foundation/offsets.py), while leadership is not known yet."""

from __future__ import annotations

import gc
import threading
import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic  # type: ignore[attr-defined]

from foundation.clients import kafka_config
from foundation.offsets import last_stable_offsets
from foundation.settings import Settings
from tests.conftest import SecuredKafka, free_port
from topologies.access import Role

pytestmark = pytest.mark.kafka


def test_end_offsets_wait_for_a_partition_whose_leader_is_not_known_yet(kafka_bootstrap: str) -> None:
    """Defect (a fresh-clone CI run of test_worker_faults.py, the worker started while the broker
    was frozen): right after the broker woke, its metadata named no leader for the changelog's
    partitions, and ListOffsets failed at once with _NOENT "Failed to query partition leaders:
    No leaders found". That error was not taken as transient, so the worker's restore raised it
    and the worker stopped. Here the partition asked for gets its leader a moment after the ask
    (it is created then): the ask must wait for it, within its budget."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic = f"leaderless-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    answers: list[object] = []

    def ask() -> None:
        try:
            answers.append(last_stable_offsets(admin, topic, [1], budget_s=30))
        except Exception as error:  # noqa: BLE001 - recorded for the assertion
            answers.append(error)

    asking = threading.Thread(target=ask)
    asking.start()
    time.sleep(1.0)  # asked before partition 1 has a leader
    admin.create_partitions([NewPartitions(topic, 2)])[topic].result()
    asking.join(40)
    assert answers == [{1: 0}]


def test_end_offsets_of_a_topic_the_user_may_not_describe_are_refused_not_awaited(
    kafka_secured: SecuredKafka,
) -> None:
    """The same local _NOENT comes to a user who may not describe the topic (no leader is named
    to it either); the metadata says why, and that refusal is raised as it is, not retried for
    the budget as a leader that is yet to come."""
    topic = f"undescribed-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(kafka_secured.cluster.client_config())  # held until its future is read
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    outsider = Settings(**kafka_secured.credentials(Role.EVENT_CONSUMER.value))  # no ACL on this topic
    with pytest.raises(KafkaException) as refused:
        last_stable_offsets(AdminClient(kafka_config(outsider)), topic, [0], budget_s=30)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused.value


def test_end_offsets_asked_with_a_deaf_client_ask_again_with_a_new_one(kafka_bootstrap: str) -> None:
    """A client can stay deaf for good after meeting a broker just back from a pause (a Metadata
    answer that listed no brokers: topologies.admin.fresh_admin). A worker's restore kept the one
    admin client it made at start, during such a pause in test_worker_faults' frozen start, and
    asked it until its budget ran out. With `renew`, the asks after a failed one go to a new
    client. The deaf client here is one whose bootstrap server never answers."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic = f"deaf-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    # Nothing listens there. Silent (log_level 0): it logged its refused connections to this
    # process's stderr for the rest of the session while failed asks kept it alive (fixed in
    # foundation/offsets.py; tests/unit/foundation/test_offsets_clients.py).
    deaf = AdminClient({"bootstrap.servers": f"127.0.0.1:{free_port()}", "log_level": 0})
    made: list[AdminClient] = []

    def renew() -> AdminClient:
        made.append(AdminClient({"bootstrap.servers": kafka_bootstrap}))
        return made[-1]

    assert last_stable_offsets(deaf, topic, [0], budget_s=30, renew=renew) == {0: 0}
    assert len(made) == 1  # one new client, after the deaf one's failed ask
    with pytest.raises(KafkaException):
        last_stable_offsets(deaf, topic, [0], budget_s=10)  # without: the same deaf client to the end
    del deaf, renew, admin  # dropped, not left for the end of the session
    made.clear()
    gc.collect()
