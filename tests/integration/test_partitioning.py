"""Keys produced by confluent-kafka (partitioner murmur2_random, as documented) land on
the partition of Kafka's default partitioner, and the account's events produced by the
worker land on that same partition; its results all land on one partition, the lowest the
worker owns (a transaction touches one results partition, not one per shard)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Producer

from codec import Codec
from foundation.settings import Settings
from ledger import commands
from streams.processor import LedgerProcessor
from tests.principals import TESTER
from tests.support import read_topic
from topologies import partition_for

pytestmark = pytest.mark.kafka


def test_commands_and_events_of_an_account_share_its_partition(settings: Settings) -> None:
    codec = Codec()
    accounts = [f"p-{uuid.uuid4().hex[:8]}-{index}" for index in range(64)]
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
    for account in accounts:
        command = commands.OpenAccount(
            principal=TESTER,
            owner=TESTER.principal_id,
            command_id=f"c-{account}",
            dedup_id="o",
            account_id=account,
            currency="EUR",
        )
        producer.produce(f"{settings.topic_prefix}.commands", codec.encode(command), account.encode())
    producer.flush(10)
    command_partitions = {
        message.key().decode(): message.partition()
        for message in read_topic(settings.bootstrap_servers, f"{settings.topic_prefix}.commands")
    }
    assert command_partitions == {account: partition_for(account, settings.partitions) for account in accounts}
    assert len(set(command_partitions.values())) == settings.partitions  # the keys cover every partition

    processor = LedgerProcessor(settings)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while processor.metrics.events < len(accounts) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
    event_partitions = {
        message.key().decode(): message.partition()
        for message in read_topic(settings.bootstrap_servers, f"{settings.topic_prefix}.events")
    }
    assert event_partitions == command_partitions
    result_partitions = {
        message.partition() for message in read_topic(settings.bootstrap_servers, f"{settings.topic_prefix}.results")
    }
    assert result_partitions == {0}  # the worker owns every partition: its results are all on the lowest


def test_librdkafka_default_partitioner_disagrees_which_is_why_it_is_configured() -> None:
    """librdkafka's default (consistent_random, CRC32) puts keys elsewhere: a producer of
    commands that forgets `partitioner=murmur2_random` sends them to the wrong shard,
    where they are refused (see test_dead_letters: MALFORMED)."""
    import zlib

    keys = [f"account-{index}" for index in range(100)]
    crc_partitions = [zlib.crc32(key.encode()) % 8 for key in keys]
    assert crc_partitions != [partition_for(key, 8) for key in keys]
