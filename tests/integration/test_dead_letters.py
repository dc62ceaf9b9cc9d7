"""Bad input on the commands topic goes to the dead-letter topic with a reason; the
commands after it are still processed, and nothing else is disturbed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from codec import Codec
from codec.deadletter import DeadLetter
from foundation.settings import Settings
from ledger import commands, legs
from ledger.events import AccountEvent, CommandResult, ResultStatus
from streams.processor import LedgerProcessor
from tests.principals import TESTER
from tests.support import read_decoded, running_processor

pytestmark = pytest.mark.kafka


@pytest.fixture
def processor(settings: Settings) -> Iterator[LedgerProcessor]:
    with running_processor(settings) as processor:
        yield processor


def wait_for(predicate: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_poison_messages_go_to_the_dead_letter_topic_and_processing_continues(
    settings: Settings, processor: LedgerProcessor
) -> None:
    codec = Codec()
    account = f"dl-{uuid.uuid4().hex[:6]}"
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "partitioner": "murmur2_random",
            "message.max.bytes": 2_000_000,
        }
    )
    topic = f"{settings.topic_prefix}.commands"

    def send(value: bytes | None, key: bytes = account.encode()) -> None:
        producer.produce(topic, value, key)

    valid = codec.encode(
        commands.Deposit(
            principal=TESTER, command_id="c-2", dedup_id="d2", account_id=account, amount=5, currency="USD"
        )
    )
    send(
        codec.encode(
            commands.OpenAccount(
                principal=TESTER,
                owner=TESTER.principal_id,
                command_id="c-1",
                dedup_id="d1",
                account_id=account,
                currency="USD",
            )
        )
    )
    send(b"not avro at all")  # no single-object marker
    send(b"\xc3\x01" + b"\x00" * 8 + b"xyz")  # a fingerprint no schema has
    send(valid[:10] + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")  # a Deposit's header, corrupt body
    send(valid + b"trailing")  # a record followed by garbage
    send(codec.encode(legs.Tick(worker_id="forged")))  # an internal message on the public topic
    send(None)  # a tombstone
    send(b"\xc3\x01" + b"\x00" * (settings.message_bytes_max + 1))  # larger than accepted
    send(valid)  # and life goes on
    send(
        codec.encode(
            commands.Deposit(principal=TESTER, command_id="c-3", dedup_id="d3", account_id="", amount=1, currency="USD")
        ),
        key=b"",
    )  # decodable but malformed: a rejection result, not a dead letter
    producer.flush(10)

    wait_for(lambda: processor.metrics.dead_letters >= 7)
    letters: list[DeadLetter] = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.deadletter", codec)
    assert sorted(letter.reason_code for letter in letters) == sorted(
        ["UNDECODABLE", "UNKNOWN_SCHEMA", "UNDECODABLE", "UNDECODABLE", "UNEXPECTED_TYPE", "UNDECODABLE", "TOO_LARGE"]
    )
    assert all(letter.source_topic == topic and letter.reason for letter in letters)
    assert {letter.value for letter in letters if letter.reason_code == "UNKNOWN_SCHEMA"} == {
        b"\xc3\x01" + b"\x00" * 8 + b"xyz"
    }

    def results() -> dict[str, CommandResult]:
        decoded = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.results", codec)
        return {result.command_id: result for result in decoded}

    wait_for(lambda: {"c-1", "c-2", "c-3"} <= set(results()))
    final = results()
    assert final["c-2"].status is ResultStatus.ACCEPTED and final["c-2"].positions[0].balance == 5
    assert final["c-3"].status is ResultStatus.REJECTED and final["c-3"].code is not None
    assert final["c-3"].code.value == "MALFORMED"
    events: list[AccountEvent] = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.events", codec)
    assert [(event.account_id, event.sequence, event.balance) for event in events] == [(account, 1, 0), (account, 2, 5)]


def test_poison_on_the_internal_legs_topic_goes_to_the_dead_letter_topic_too(
    settings: Settings, processor: LedgerProcessor
) -> None:
    codec = Codec()
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
    legs_topic = f"{settings.topic_prefix}.legs"
    producer.produce(legs_topic, b"garbage on an internal topic", b"somebody")
    producer.produce(
        legs_topic,
        codec.encode(
            commands.Deposit(principal=TESTER, command_id="c", dedup_id="d", account_id="a", amount=1, currency="USD")
        ),
        b"a",
    )
    account = f"after-{uuid.uuid4().hex[:6]}"
    producer.produce(
        f"{settings.topic_prefix}.commands",
        codec.encode(
            commands.OpenAccount(
                principal=TESTER,
                owner=TESTER.principal_id,
                command_id="c-after",
                dedup_id="o",
                account_id=account,
                currency="USD",
            )
        ),
        account.encode(),
    )
    producer.flush(10)
    wait_for(lambda: processor.metrics.dead_letters >= 2)
    letters: list[DeadLetter] = read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.deadletter", codec)
    assert sorted((letter.source_topic, letter.reason_code) for letter in letters) == [
        (legs_topic, "UNDECODABLE"),
        (legs_topic, "UNEXPECTED_TYPE"),  # a client command does not belong on the internal topic
    ]
    wait_for(
        lambda: any(
            result.command_id == "c-after"
            for result in read_decoded(settings.bootstrap_servers, f"{settings.topic_prefix}.results", codec)
        )
    )
