"""The worker's fetch.min.bytes (foundation/settings.py `fetch_min_bytes`): set from the
environment, carried into the worker's consumer, and refused with the variable's name when
librdkafka would refuse it."""

from __future__ import annotations

import pytest

from foundation.settings import Settings
from streams.clients import consumer_config


def test_the_setting_reaches_the_workers_consumer() -> None:
    settings = Settings.from_environment({"STREAMWALLET_FETCH_MIN_BYTES": "4096"})
    assert consumer_config(settings)["fetch.min.bytes"] == 4096
    assert consumer_config(Settings())["fetch.min.bytes"] == Settings().fetch_min_bytes


@pytest.mark.parametrize("text", ["0", "-1", "100000001"])
def test_a_value_librdkafka_would_refuse_is_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match=f"STREAMWALLET_FETCH_MIN_BYTES={text}: expected 1 to 100000000"):
        Settings.from_environment({"STREAMWALLET_FETCH_MIN_BYTES": text})


def test_a_value_that_is_not_a_number_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="STREAMWALLET_FETCH_MIN_BYTES='16k' is not a valid int"):
        Settings.from_environment({"STREAMWALLET_FETCH_MIN_BYTES": "16k"})
