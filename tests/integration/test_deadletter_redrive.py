"""`streamwallet deadletter redrive` on a realistic case: a command refused as TOO_LARGE by
a worker whose `message_bytes_max` is too small is re-driven once the limit is raised,
and is applied exactly once however often the redrive runs. Beside it, a dead letter whose
value was cut (it cannot be re-driven) and one from the internal legs topic (re-driven
only with --include-legs). The CLI runs as a subprocess; the workers run in this process."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from codec import Codec
from codec.deadletter import DEAD_LETTER_VALUE_BYTES_MAX, DeadLetter
from foundation.settings import Settings
from ledger.events import AccountEvent, CommandResult, EventKind, ResultStatus
from tests.conftest import fresh_settings
from tests.support import read_decoded, read_topic, run_cli, running_processor

pytestmark = pytest.mark.kafka

SMALL_MESSAGE_BYTES_MAX = 150  # an ordinary command is ~80 bytes; one with a 128-character dedup id ~200


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.2)


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, *args)


def test_a_too_large_command_is_redriven_after_the_fix_and_applied_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = fresh_settings(kafka_bootstrap, tmp_path, message_bytes_max=SMALL_MESSAGE_BYTES_MAX)
    topology, codec = settings.topology(), Codec()
    account, deposit_id = f"redrive-{uuid.uuid4().hex[:8]}", f"big-{uuid.uuid4().hex}"
    deposit = ["submit", "Deposit", "--command-id", deposit_id, "--dedup-id", "x" * 128, "--account-id", account]
    deposit += ["--amount", "42.00", "--currency", "USD"]

    with running_processor(settings) as small:
        opened = cli(settings, "submit", "OpenAccount", "--dedup-id", "o", "--account-id", account, "--currency", "USD")
        assert opened.returncode == 0, opened.stdout + opened.stderr
        lost = cli(settings, *deposit, "--timeout-s", "3")
        assert lost.returncode == 4 and "outcome is unknown" in lost.stderr, lost.stdout + lost.stderr
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "message.max.bytes": 2_000_000})
        producer.produce(topology.legs.name, b"a leg that cannot be decoded", account.encode())
        producer.produce(topology.commands.name, b"\xc3\x01" + b"\x00" * DEAD_LETTER_VALUE_BYTES_MAX, account.encode())
        producer.flush(30)
        wait_for(lambda: small.metrics.dead_letters >= 3)

    shown = cli(settings, "tail", "deadletter", "--from-beginning", "--no-follow")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 3 and "TOO_LARGE  from " in lines[0] and f"key {account}  " in lines[0], shown.stdout
    assert sum("UNDECODABLE  from " + topology.legs.name in line for line in lines) == 1, shown.stdout
    assert sum(f"{DEAD_LETTER_VALUE_BYTES_MAX} bytes" in line for line in lines) == 1, shown.stdout

    planned = cli(settings, "deadletter", "redrive", "--dry-run", "--json")
    assert planned.returncode == 3, planned.stdout + planned.stderr  # two letters cannot go
    verdicts = sorted(letter["verdict"] for letter in json.loads(planned.stdout)["letters"])
    assert verdicts == ["cannot be re-driven", "redrive", "refused"], planned.stdout

    with running_processor(dataclasses.replace(settings, message_bytes_max=1024 * 1024)) as raised:
        first = cli(settings, "deadletter", "redrive")
        assert first.returncode == 3, first.stdout + first.stderr
        assert "re-driven now: 1" in first.stdout and "cut at 1048576 bytes" in first.stdout, first.stdout
        assert "only with --include-legs" in first.stdout, first.stdout
        second = cli(settings, "deadletter", "redrive", "--reason", "TOO_LARGE", "--json")
        assert second.returncode == 3, second.stdout + second.stderr
        assert json.loads(second.stdout)["counts"] == {
            "already re-driven": 1,
            "not selected": 1,
            "cannot be re-driven": 1,
        }, second.stdout

        def results() -> list[CommandResult]:
            decoded = read_decoded(settings.bootstrap_servers, topology.results.name, codec)
            return [result for result in decoded if result.command_id == deposit_id]

        wait_for(lambda: bool(results()))
        time.sleep(2)  # a second copy, had one been sent, would have been decided by now
        assert [(r.status, r.replayed) for r in results()] == [(ResultStatus.ACCEPTED, False)]
        events: list[AccountEvent] = read_decoded(settings.bootstrap_servers, topology.events.name, codec)
        deposits = [e for e in events if e.account_id == account and e.kind is EventKind.DEPOSITED]
        assert [(e.amount, e.balance) for e in deposits] == [(4200, 4200)]
        assert len(read_topic(settings.bootstrap_servers, topology.redriven.name)) == 1

        legs = cli(settings, "deadletter", "redrive", "--include-legs")
        assert legs.returncode == 3, legs.stdout + legs.stderr  # the cut one still cannot go
        assert legs.stderr.startswith("WARNING: re-driving legs") and "re-driven now: 1" in legs.stdout
        wait_for(lambda: raised.metrics.dead_letters >= 1)  # still garbage: a new letter, from the copy
    letters: list[DeadLetter] = read_decoded(settings.bootstrap_servers, topology.deadletter.name, codec)
    from_legs = [letter for letter in letters if letter.source_topic == topology.legs.name]
    # Two letters of two records: the original and its copy (each a position of its own).
    positions = {(letter.source_partition, letter.source_offset) for letter in from_legs}
    assert len(from_legs) == 2 and len(positions) == 2, from_legs
    assert len(read_topic(settings.bootstrap_servers, topology.redriven.name)) == 2

    # The copy failed again: it is not sent round once more unless asked.
    again = cli(settings, "deadletter", "redrive", "--include-legs", "--json")
    assert again.returncode == 3, again.stdout + again.stderr
    refused = [letter for letter in json.loads(again.stdout)["letters"] if letter["verdict"] == "refused"]
    assert len(refused) == 1 and "failed again after its re-drive" in refused[0]["why"], again.stdout
    forced = cli(settings, "deadletter", "redrive", "--include-legs", "--again", "--dry-run", "--json")
    assert json.loads(forced.stdout)["counts"]["redrive"] == 1, forced.stdout
