"""Retrying Kafka calls while leadership settles: transient errors retried (bounded),
anything else raised at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException

from foundation import consuming


def failing(code: int, times: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise KafkaException(KafkaError(code))
        return "answer"

    return calls, call


def test_a_transient_error_is_retried_until_the_call_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consuming, "TRANSIENT_BACKOFF_S", 0.001)
    calls, call = failing(KafkaError.NOT_LEADER_FOR_PARTITION, times=3)
    assert consuming.retry_transient(call) == "answer"
    assert len(calls) == 4


def test_another_error_is_raised_at_once() -> None:
    calls, call = failing(KafkaError.TOPIC_AUTHORIZATION_FAILED, times=1)
    with pytest.raises(KafkaException):
        consuming.retry_transient(call)
    assert len(calls) == 1


def test_retries_are_bounded_in_time_and_back_off() -> None:
    calls, call = failing(KafkaError.LEADER_NOT_AVAILABLE, times=10**6)
    started = time.monotonic()
    with pytest.raises(KafkaException):
        consuming.retry_transient(call, budget_s=1.0)
    assert time.monotonic() - started <= 1.0 + consuming.TRANSIENT_BACKOFF_S_MAX
    assert 3 <= len(calls) <= 10  # 0.1, 0.2, 0.4 s ...: growing, not a busy loop
