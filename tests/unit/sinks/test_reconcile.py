"""Reconciliation's comparison on a view in chDB, a replay and a command side built from
the same events; then each kind of damage, and that it is found."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.event_workload import generate
from codec import Codec
from ledger.accounts import Account
from ledger.chain import chain
from ledger.events import AccountEvent, EventKind
from sinks import views
from sinks.events import EventDecoder
from sinks.reconcile import Difference, Replay, Report, compare, render, view_at_sequences
from tests.unit.sinks import oracle
from tests.unit.sinks.support import messages, sink, write_in_batches


def command_side(events: list[AccountEvent]) -> dict[str, Account]:
    accounts = {}
    for account_id, history in oracle.by_account(events).items():
        last = history[-1]
        accounts[account_id] = Account(
            account_id=account_id,
            currency=last.currency,
            status=last.status,
            lower_limit=last.lower_limit,
            upper_limit=last.upper_limit,
            balance=last.balance,
            held=last.held,
            pending_in=last.pending_in,
            pending_out=last.pending_out,
            sequence=last.sequence,
            parent_account_id=last.parent_account_id,
            metadata={},
            created_at_ms=history[0].occurred_at_ms,
            updated_at_ms=last.occurred_at_ms,
        )
    return accounts


def replay(events: list[AccountEvent], command: dict[str, Account], codec: Codec) -> Replay:
    decoder = EventDecoder(codec)
    result = Replay({account_id: account.sequence for account_id, account in command.items()})
    for message in messages(events, codec):
        result.add(decoder.row(message.value() or b"", message.partition(), message.offset()))
        event = codec.decode(message.value() or b"", expected=(AccountEvent,))
        result.chain.add(event, partition=message.partition() or 0, offset=message.offset() or 0)
    return result


def chained(events: list[AccountEvent]) -> list[AccountEvent]:
    """The events with each account's hash chain, as the ledger writes them (the workload has none)."""
    last: dict[str, str] = {}
    linked = []
    for event in events:
        copy = dataclasses.replace(event)
        chain(copy, previous_hash=last.get(event.account_id, ""))
        last[event.account_id] = copy.hash
        linked.append(copy)
    return linked


def differences(
    client: Any, database: str, events: list[AccountEvent], command: dict[str, Account]
) -> list[Difference]:
    return compare_with(client, database, replay(events, command, Codec()), command)


def load(client: Any, database: str) -> list[AccountEvent]:
    codec = Codec()
    events = generate(21, accounts=25, events=1500)
    write_in_batches(sink(client, database, codec), messages(events, codec), 400)
    return events


def test_agreement_gives_no_differences_and_a_readable_table(clickhouse: Any, database: str) -> None:
    events = load(clickhouse, database)
    command = command_side(events)
    found = differences(clickhouse, database, events, command)
    assert found == []
    report = Report(cut={0: 1}, totals_view=views.totals(clickhouse, database), differences=found)
    text = render(report)
    assert "no differences" in text and "USD" in text
    assert Report.from_json(report.to_json()) == report


def test_a_corrupted_row_in_the_middle_of_a_history(clickhouse: Any, database: str) -> None:
    events = load(clickhouse, database)
    victim = next(event for event in events if event.sequence == 5)
    # Same key, other balance: ReplacingMergeTree keeps the last insert, as a bad write would.
    columns = ", ".join(name for name in ("account_id", "sequence", "kind", "amount", "balance", "currency"))
    clickhouse.command(
        f"INSERT INTO {database}.account_events ({columns}) SELECT account_id, sequence, kind, amount, "
        f"balance + 1, currency FROM {database}.account_events FINAL "
        f"WHERE account_id = '{victim.account_id}' AND sequence = 5"
    )
    found = differences(clickhouse, database, events, command_side(events))
    fields = {(difference.subject, difference.field) for difference in found}
    assert (victim.account_id, "sum of running balances") in fields
    assert (victim.account_id, "running balance") in fields
    text = render(Report(cut={}, differences=found))
    assert victim.account_id in text and "difference(s)" in text


def test_a_missing_event_and_a_wrong_newest_state(clickhouse: Any, database: str) -> None:
    events = load(clickhouse, database)
    histories = oracle.by_account(events)
    gap_account, newest_account = sorted(histories)[:2]
    clickhouse.command(
        f"DELETE FROM {database}.account_events WHERE account_id = '{gap_account}' AND sequence = 3",
    )
    last = histories[newest_account][-1]
    clickhouse.command(
        f"ALTER TABLE {database}.account_latest UPDATE balance = balance + 7 WHERE account_id = '{newest_account}'",
        settings={"mutations_sync": 2},
    )
    found = differences(clickhouse, database, events, command_side(events))
    fields = {(difference.subject, difference.field) for difference in found}
    assert (gap_account, "events") in fields and (gap_account, "running balance") in fields
    assert (newest_account, "account_latest") in fields
    assert last.sequence == views.balance(clickhouse, database, newest_account)["sequence"]  # type: ignore[index]


def test_the_command_side_disagreeing_and_conservation_drift(clickhouse: Any, database: str) -> None:
    events = load(clickhouse, database)
    command = command_side(events)
    account_id = sorted(command)[3]
    command[account_id] = dataclasses.replace(command[account_id], balance=command[account_id].balance + 1)
    # An event the view never got (and an account only the topic knows), and money from nowhere.
    extra = dataclasses.replace(
        events[-1],
        account_id="ghost",
        sequence=1,
        kind=EventKind.TRANSFER_CREDITED,
        correlation_id=None,
        amount=500,
        balance=500,
        available=500,
        held=0,
        pending_out=0,
    )
    found = differences(clickhouse, database, [*events, extra], command)
    fields = {(difference.subject, difference.field) for difference in found}
    assert (account_id, "balance") in fields
    assert ("ghost", "account") in fields
    assert (extra.currency, "conservation drift") in fields


def test_an_event_altered_in_the_topic_breaks_its_accounts_hash_chain(clickhouse: Any, database: str) -> None:
    events = load(clickhouse, database)
    command = command_side(events)
    codec = Codec()
    linked = chained(events)
    assert compare_with(clickhouse, database, replay(linked, command, codec), command) == []
    index = next(index for index, event in enumerate(linked) if event.sequence == 4)
    altered = [*linked]
    altered[index] = dataclasses.replace(linked[index], counterparty_account_id="someone-else")
    found = compare_with(clickhouse, database, replay(altered, command, codec), command)
    assert [(d.subject, d.field) for d in found] == [(linked[index].account_id, "hash chain")], found
    assert "sequence 4 at partition" in found[0].replay and "altered" in found[0].note


def compare_with(client: Any, database: str, replayed: Replay, command: dict[str, Account]) -> list[Difference]:
    return compare(
        command_side=command,
        replay=replayed,
        view=views.account_summaries(client, database),
        view_at_command_sequence=view_at_sequences(
            client, database, {account_id: account.sequence for account_id, account in command.items()}
        ),
        running_breaks=views.running_balance_breaks(client, database),
        latest_mismatches=views.latest_table_mismatches(client, database),
        totals_view=views.totals(client, database),
    )
