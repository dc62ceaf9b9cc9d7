"""`streamwallet flows in-flight` for real: two ledger workers on a broker, a transfer from an
account of one worker's partition to an account of the other's while the other is paused
(SIGSTOP, within its session: it keeps its partitions and decides nothing). The command, run
as an operator runs it, lists the transfer where it is stuck; once the paused worker resumes
the flow finishes and the list is empty."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from foundation.clients import kafka_config
from foundation.settings import Settings
from streamwallet.stack import ManagedProcess, Stack
from tests.conftest import fresh_settings
from tests.support import run_cli as cli
from topologies import partition_for

pytestmark = pytest.mark.kafka

CLI_PRINCIPAL = "flows-operator"

SESSION_TIMEOUT_MS = 60_000  # far longer than the pause: the paused worker keeps its partitions
WAIT_S = 40.0
GROUP_TIMEOUT_S = 10.0


@pytest.fixture
def two_workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, ManagedProcess]]]:
    # The CLI acts as the owner of the accounts it opens (and may open them and deposit).
    settings = dataclasses.replace(
        fresh_settings(
            kafka_bootstrap, tmp_path, cli_principal_id=CLI_PRINCIPAL, cli_principal_roles="OWNER,OPERATOR,ADMIN"
        ),
        session_timeout_ms=SESSION_TIMEOUT_MS,
    )
    stack = Stack(settings, tmp_path)
    workers = {f"worker-{index}": stack.worker(index).start() for index in (1, 2)}
    try:
        for worker in workers.values():
            worker.wait_ready()
        yield settings, workers
    finally:
        stack.stop_all()


def owned_partitions(settings: Settings) -> dict[str, set[int]]:
    """Each worker id's partitions of the commands topic, as the group assigned them."""
    admin = AdminClient(kafka_config(settings))
    group = f"{settings.topic_prefix}.ledger"
    deadline = time.monotonic() + WAIT_S
    while True:
        description = admin.describe_consumer_groups([group])[group].result(timeout=GROUP_TIMEOUT_S)
        owned = {
            member.group_instance_id: {
                tp.partition
                for tp in member.assignment.topic_partitions
                if tp.topic == settings.topology().commands.name
            }
            for member in description.members
        }
        if len(owned) == 2 and all(owned.values()):
            return owned
        assert time.monotonic() < deadline, f"the group did not settle: {owned}"
        time.sleep(0.5)


def account_on(partitions: set[int], count: int, label: str) -> str:
    for _ in range(10_000):
        account_id = f"{label}-{uuid.uuid4().hex[:8]}"
        if partition_for(account_id, count) in partitions:
            return account_id
    raise AssertionError(f"no account id found for partitions {partitions}")


def submitted(settings: Settings, *args: str) -> None:
    done = cli(settings, "submit", *args, "--dedup-id", uuid.uuid4().hex)
    assert done.returncode == 0, (args, done.stdout, done.stderr)


def in_flight(settings: Settings) -> tuple[int, list[dict[str, object]]]:
    done = cli(settings, "flows", "in-flight", "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_a_transfer_to_a_paused_partition_is_listed_in_flight_until_it_finishes(
    two_workers: tuple[Settings, dict[str, ManagedProcess]],
) -> None:
    settings, workers = two_workers
    owned = owned_partitions(settings)
    source = account_on(owned["worker-1"], settings.partitions, "source")
    destination = account_on(owned["worker-2"], settings.partitions, "destination")
    for account_id in (source, destination):
        submitted(settings, "OpenAccount", "--account-id", account_id, "--currency", "USD", "--owner", CLI_PRINCIPAL)
    submitted(settings, "Deposit", "--account-id", source, "--amount-minor", "1000", "--currency", "USD")
    code, listed = in_flight(settings)
    assert (code, listed) == (0, [])
    assert cli(settings, "flows", "in-flight").stdout.strip() == "nothing in flight"

    workers["worker-2"].pause()
    try:
        transfer = cli(
            settings, "submit", "Transfer", "--dedup-id", "stuck-1", "--from-account-id", source,
            "--to-account-id", destination, "--amount-minor", "250", "--currency", "USD", "--timeout-s", "2",
        )  # fmt: skip
        assert transfer.returncode == 4, (transfer.stdout, transfer.stderr)  # no result: the credit waits
        deadline = time.monotonic() + WAIT_S
        while not (listed := in_flight(settings)[1]):
            assert time.monotonic() < deadline, "the debited transfer never showed in the changelog"
            time.sleep(0.5)
        [flow] = listed
        assert flow["kind"] == "transfer"
        assert flow["partition"] == partition_for(source, settings.partitions)
        assert flow["waiting_on"] == partition_for(destination, settings.partitions)
        assert (flow["from_account_id"], flow["to_account_id"]) == (source, destination)
        assert (flow["amount_minor"], flow["amount"], flow["currency"]) == (250, "2.50", "USD")
        text = cli(settings, "flows", "in-flight", "--partition", str(flow["partition"]))
        assert text.returncode == 1 and destination in text.stdout, text.stdout
        other = (int(str(flow["partition"])) + 1) % settings.partitions
        assert cli(settings, "flows", "in-flight", "--partition", str(other)).returncode in (0, 1)
    finally:
        workers["worker-2"].resume()

    deadline = time.monotonic() + WAIT_S
    while in_flight(settings)[0] != 0:
        assert time.monotonic() < deadline, "the transfer stayed in flight after its destination resumed"
        time.sleep(0.5)
    refused = cli(settings, "flows", "in-flight", "--partition", str(settings.partitions))
    assert refused.returncode == 2 and "0..7" in refused.stderr, refused.stderr
