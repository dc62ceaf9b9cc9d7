"""The query side behind a real worker: read-your-writes after every command, every view
against the events the worker wrote, the "not yet" answer, and reconciliation finding a
corrupted row and a missing event, then a rebuild repairing them.

One worker and one query service (separate processes) serve the whole module; the tests
run in order on the data the first one creates.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from codec import Codec
from foundation.settings import Settings
from gateway.client import LedgerClient
from ledger import commands
from ledger.events import AccountEvent, CommandResult, ResultStatus
from streamwallet.stack import Stack
from tests.conftest import fresh_settings
from tests.integration.test_query_side import get
from tests.principals import TESTER
from tests.support import read_decoded
from tests.unit.sinks import oracle
from topologies import partition_for

pytestmark = pytest.mark.kafka

READ_WAIT_MS = 1500
COMMAND_TIMEOUT_S = 30.0


@dataclasses.dataclass
class World:
    settings: Settings
    stack: Stack
    client: LedgerClient
    store: Path
    results: list[CommandResult] = dataclasses.field(default_factory=list)


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    run_dir = tmp_path_factory.mktemp("query-worker")
    settings = fresh_settings(kafka_bootstrap, run_dir, prefix="q", read_wait_ms_max=READ_WAIT_MS)
    stack = Stack(settings, run_dir)
    processes = [stack.worker(1).start(), stack.query().start()]
    client = None
    try:
        for process in processes:
            process.wait_ready()
        client = LedgerClient(settings)
        yield World(settings, stack, client, run_dir / "clickhouse")
    finally:
        if client is not None:
            client.close()
        stack.stop_all()


def workload(prefix: str, partitions: int) -> list[commands.Command]:
    """Opens with a hierarchy (a chain, a family, a cycle), then money moving every way."""
    ids = {name: f"{prefix}-{name}" for name in ("root", "a", "b", "c", "d", "e", "x", "y", "z1", "z2")}
    parents = {"a": "root", "b": "a", "c": "b", "d": "root", "e": "d", "x": "y", "y": "x"}
    serial = iter(range(10**6))

    def next_id() -> str:
        return f"{prefix}-{next(serial)}"

    sent: list[commands.Command] = []
    for name, account_id in ids.items():
        currency = "EUR" if name.startswith("z") else "USD"
        parent = ids.get(parents.get(name, ""))
        sent.append(
            commands.OpenAccount(
                principal=TESTER,
                owner=TESTER.principal_id,
                command_id=next_id(),
                dedup_id="open",
                account_id=account_id,
                currency=currency,
                parent_account_id=parent,
            )
        )
    usd = [account_id for name, account_id in ids.items() if not name.startswith("z")]
    for index, account_id in enumerate(usd):
        sent.append(
            commands.Deposit(
                principal=TESTER,
                command_id=next_id(),
                dedup_id=f"d{index}",
                account_id=account_id,
                amount=10_000 + index,
                currency="USD",
            )
        )
    sent.append(
        commands.Deposit(
            principal=TESTER, command_id=next_id(), dedup_id="dz", account_id=ids["z1"], amount=900, currency="EUR"
        )
    )
    crossing = [
        (source, target)
        for source in usd
        for target in usd
        if source != target and partition_for(source, partitions) != partition_for(target, partitions)
    ]
    local = [
        (source, target)
        for source in usd
        for target in usd
        if source != target and partition_for(source, partitions) == partition_for(target, partitions)
    ]
    for index, (source, target) in enumerate(crossing[:40] + local[:6]):
        sent.append(
            commands.Transfer(
                principal=TESTER,
                command_id=next_id(),
                dedup_id=f"t{index}",
                from_account_id=source,
                to_account_id=target,
                amount=7 + index,
                currency="USD",
            )
        )
    for index, account_id in enumerate(usd[:5]):
        sent.append(
            commands.Withdraw(
                principal=TESTER,
                command_id=next_id(),
                dedup_id=f"w{index}",
                account_id=account_id,
                amount=100 + index,
                currency="USD",
            )
        )
    for index, account_id in enumerate(usd[:4]):
        hold_id = f"h{index}"
        sent.append(
            commands.PlaceHold(
                principal=TESTER,
                command_id=next_id(),
                dedup_id=hold_id,
                account_id=account_id,
                hold_id=hold_id,
                amount=300,
                currency="USD",
                ttl_ms=600_000,
            )
        )
        if index % 2:
            sent.append(
                commands.VoidHold(
                    principal=TESTER, command_id=next_id(), dedup_id=f"v{index}", account_id=account_id, hold_id=hold_id
                )
            )
        else:
            sent.append(
                commands.CaptureHold(
                    principal=TESTER,
                    command_id=next_id(),
                    dedup_id=f"cap{index}",
                    account_id=account_id,
                    hold_id=hold_id,
                    amount=200,
                    to_account_id=usd[-1 - index],
                    currency="USD",
                )
            )
    sent.append(
        commands.Batch(
            principal=TESTER,
            command_id=next_id(),
            dedup_id="batch",
            batch_id=f"{prefix}-batch",
            legs=[
                commands.BatchLeg(account_id=usd[0], amount=-50, currency="USD"),
                commands.BatchLeg(account_id=usd[3], amount=20, currency="USD"),
                commands.BatchLeg(account_id=usd[6], amount=30, currency="USD"),
            ],
        )
    )
    sent.append(
        commands.Transfer(
            principal=TESTER,
            command_id=next_id(),
            dedup_id="fx",
            from_account_id=ids["z1"],
            to_account_id=ids["z2"],
            amount=5,
            currency="EUR",
        )
    )
    return sent


def events_of(world: World) -> list[AccountEvent]:
    codec = Codec()
    return [
        event
        for event in read_decoded(world.settings.bootstrap_servers, f"{world.settings.topic_prefix}.events", codec)
        if isinstance(event, AccountEvent)
    ]


def test_read_your_writes_after_every_command(world: World) -> None:
    url = world.settings.query_url
    for command in workload(uuid.uuid4().hex[:6], world.settings.partitions):
        result = world.client.request(command, COMMAND_TIMEOUT_S)
        world.results.append(result)
        assert result.status is ResultStatus.ACCEPTED, (command, result)
        for position in result.positions:
            # At once, with the sequence the result returned: the write must be visible.
            status, body = get(f"{url}/accounts/{position.account_id}?min_seq={position.sequence}")
            assert status == 200, body
            assert body["account"]["sequence"] >= position.sequence
            if body["account"]["sequence"] == position.sequence:
                assert body["account"]["balance"] == position.balance
                assert body["account"]["available"] == position.available
            status, page = get(f"{url}/accounts/{position.account_id}/history?limit=1&min_seq={position.sequence}")
            assert status == 200 and page["events"][0]["sequence"] >= position.sequence, page


def test_every_view_matches_the_events_the_worker_wrote(world: World) -> None:
    url = world.settings.query_url
    events = events_of(world)
    histories = oracle.by_account(events)
    assert len(histories) == 10
    for account_id, history in histories.items():
        status, body = get(f"{url}/accounts/{account_id}?min_seq={history[-1].sequence}")
        assert status == 200
        body["account"].pop("updated_at")
        assert body["account"] == oracle.state(history[-1])
        status, page = get(f"{url}/accounts/{account_id}/history?limit=3")
        seen = list(page["events"])
        while page["next_cursor"] is not None:
            status, page = get(f"{url}/accounts/{account_id}/history?limit=3&before={page['next_cursor']}")
            seen += page["events"]
        assert [(event["sequence"], event["balance"]) for event in reversed(seen)] == list(
            zip([event.sequence for event in history], oracle.running_balances(history), strict=True)
        )
        for event in history[:: max(1, len(history) // 4)]:
            status, body = get(f"{url}/accounts/{account_id}/as-of?sequence={event.sequence}")
            assert status == 200 and body["account"]["balance"] == event.balance
            expected = oracle.as_of_time(history, event.occurred_at_ms)
            status, body = get(f"{url}/accounts/{account_id}/as-of?at={event.occurred_at_ms}")
            assert status == 200 and expected is not None and body["account"]["sequence"] == expected.sequence
        status, body = get(f"{url}/accounts/{account_id}/turnover")
        assert status == 200 and body["days"] == oracle.turnover(history)
        members, cycles = oracle.descendants(events, account_id)
        status, body = get(f"{url}/accounts/{account_id}/rollup")
        assert status == 200
        assert body["descendants"] == len(members) - 1 and set(body["cycles_at"]) == cycles, account_id
        newest = [histories[member][-1] for member in members]
        by_currency = {row["currency"]: row["balance"] for row in body["by_currency"]}
        assert by_currency == {
            currency: sum(event.balance for event in newest if event.currency == currency)
            for currency in {event.currency for event in newest}
        }
    root = next(account_id for account_id in histories if account_id.endswith("-root"))
    status, body = get(f"{url}/accounts/{root}/rollup")
    assert body["descendants"] == 5 and body["depth"] == 3
    status, body = get(f"{url}/totals?cut=none")
    rows = {row.pop("currency"): row for row in body["currencies"]}
    assert rows == oracle.totals(events, world.settings.partitions)
    assert all(row["drift"] == 0 for row in rows.values())
    deadline = time.monotonic() + 10
    while True:  # the sink's consistent cut follows within a lag refresh or two
        status, body = get(f"{url}/totals")
        if (body["consistent"] and sum(body["cut"].values()) >= len(events)) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert body["consistent"] and all(row["drift"] == 0 for row in body["currencies"]), body


def test_a_read_ahead_of_the_view_answers_not_yet_after_the_bound(world: World) -> None:
    account_id = world.results[0].positions[0].account_id
    status, body = get(f"{world.settings.query_url}/accounts/{account_id}")
    started = time.monotonic()
    status, body = get(f"{world.settings.query_url}/accounts/{account_id}?min_seq={body['account']['sequence'] + 50}")
    waited_s = time.monotonic() - started
    assert status == 409 and body["status"] == "not_yet", body
    assert "has not reached sequence" in body["message"]
    assert READ_WAIT_MS / 1000 <= waited_s < READ_WAIT_MS / 1000 + 2


def cli(world: World, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamwallet.cli", *arguments],
        env={**os.environ, **world.settings.environment()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def damage(store: Path, database: str, *, corrupt: str, lose: str) -> None:
    """Corrupt a middle row of one account and delete an event of another, straight in the
    store (in a process of its own: this one must not open a chDB folder)."""
    script = textwrap.dedent(
        f"""
        from sinks.clickhouse import connect
        client = connect("chdb://{store}")
        client.command(
            "INSERT INTO {database}.account_events SELECT * REPLACE (balance + 1 AS balance) "
            "FROM {database}.account_events FINAL WHERE account_id = '{corrupt}' AND sequence = 3"
        )
        client.command("DELETE FROM {database}.account_events WHERE account_id = '{lose}' AND sequence = 2")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, cwd=Path(__file__).parents[2])


def test_reconciliation_finds_a_corrupted_row_and_a_missing_event_and_a_rebuild_repairs_them(world: World) -> None:
    clean = cli(world, "reconcile")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no differences" in clean.stdout and "command side 10" in clean.stdout

    locked = cli(world, "reconcile", "--via", "direct")
    assert locked.returncode == 2
    assert "in use by another process" in locked.stderr

    accounts = sorted(oracle.by_account(events_of(world)))
    corrupt, lose = accounts[0], accounts[1]
    query = next(process for process in world.stack.processes if process.role == "query")
    query.stop()
    damage(world.store, world.settings.clickhouse_database, corrupt=corrupt, lose=lose)
    query.start()
    query.wait_ready()

    found = cli(world, "reconcile")
    assert found.returncode == 1, found.stdout + found.stderr
    table = found.stdout
    assert "difference(s)" in table
    assert re.search(rf"^{corrupt}\s+running balance\s", table, re.MULTILINE), table
    assert re.search(rf"^{corrupt}\s+sum of running balances\s", table, re.MULTILINE), table
    assert re.search(rf"^{lose}\s+events\s", table, re.MULTILINE), table

    rebuilt = cli(world, "rebuild-views")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "done:" in rebuilt.stdout
    again = cli(world, "reconcile")
    assert again.returncode == 0, again.stdout + again.stderr
