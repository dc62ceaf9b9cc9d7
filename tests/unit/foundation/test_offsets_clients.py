"""The admin clients an ask for end offsets used are freed once the asking is over
(foundation/offsets.py), also when every ask failed: a worker's restore asks with a new client
after each failure through an outage, and each client kept alive holds librdkafka's threads and
a socket for the rest of the process. No broker is needed: the clients point at a port where
nothing listens, as a broker that is down looks to them."""

from __future__ import annotations

import gc
import os
import weakref

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from foundation.offsets import high_watermarks
from tests.conftest import free_port


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_the_clients_of_asks_that_got_no_answer_are_freed_when_the_asking_gives_up() -> None:
    port = free_port()
    made: list[weakref.ref[AdminClient]] = []

    def new_client() -> AdminClient:
        client = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})  # silent: refused lines
        made.append(weakref.ref(client))
        return client

    threads_before = _threads()
    with pytest.raises(KafkaException):
        high_watermarks(new_client(), "nowhere", [0], budget_s=6.0, renew=new_client)
    gc.collect()
    assert len(made) >= 2, "the failed ask was not followed by a new client"
    alive = [index for index, client in enumerate(made) if client() is not None]
    # Each one kept holds librdkafka's threads: a restore through a long outage would pile them up.
    assert not alive, (
        f"clients {alive} of {len(made)} outlived the asking; the process has {_threads()} threads, "
        f"{threads_before} before"
    )
