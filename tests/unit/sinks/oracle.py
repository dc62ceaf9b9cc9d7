"""Expected query answers, folded straight from a list of AccountEvents in Python.

Written without ClickHouse and without sinks/: the running balance is the running sum of
amounts (not the events' own balance), the hierarchy a walk over parent links, flows in
flight a small state machine per transfer and batch.
"""

from __future__ import annotations

import collections
import datetime
from collections.abc import Iterable
from typing import Any

from ledger.events import AccountEvent, EventKind
from topologies import partition_for

DEPTH_MAX = 32


def by_account(events: Iterable[AccountEvent]) -> dict[str, list[AccountEvent]]:
    grouped: dict[str, list[AccountEvent]] = collections.defaultdict(list)
    for event in events:
        grouped[event.account_id].append(event)
    for history in grouped.values():
        history.sort(key=lambda event: event.sequence)
    return dict(grouped)


def running_balances(history: list[AccountEvent]) -> list[int]:
    total, result = 0, []
    for event in history:
        total += event.amount
        result.append(total)
    return result


def state(event: AccountEvent) -> dict[str, Any]:
    return {
        "account_id": event.account_id,
        "sequence": event.sequence,
        "currency": event.currency,
        "status": event.status.value,
        "balance": event.balance,
        "held": event.held,
        "available": event.balance - event.held,
        "pending_in": event.pending_in,
        "pending_out": event.pending_out,
        "lower_limit": event.lower_limit,
        "upper_limit": event.upper_limit,
        "parent_account_id": event.parent_account_id,
        "owner": event.owner,
        "updated_at_ms": event.occurred_at_ms,
    }


def as_of_time(history: list[AccountEvent], at_ms: int) -> AccountEvent | None:
    before = [event for event in history if event.occurred_at_ms <= at_ms]
    return before[-1] if before else None


def day(milliseconds: int) -> str:
    return datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.UTC).date().isoformat()


def turnover(history: list[AccountEvent]) -> list[dict[str, Any]]:
    days: dict[str, dict[str, Any]] = {}
    for event, balance in zip(history, running_balances(history), strict=True):
        row = days.setdefault(
            day(event.occurred_at_ms),
            {"events": 0, "money_events": 0, "credits": 0, "debits": 0, "net": 0, "closing_balance": 0},
        )
        row["events"] += 1
        row["money_events"] += event.amount != 0
        row["credits"] += max(event.amount, 0)
        row["debits"] += max(-event.amount, 0)
        row["net"] += event.amount
        row["closing_balance"] = balance
    return [{"day": key, **row, "turnover": row["credits"] + row["debits"]} for key, row in sorted(days.items())]


def descendants(events: Iterable[AccountEvent], root: str) -> tuple[set[str], set[str]]:
    """(the root and its descendants within DEPTH_MAX, accounts reached again through a cycle)."""
    children: dict[str, set[str]] = collections.defaultdict(set)
    for event in events:
        if event.parent_account_id is not None:
            children[event.parent_account_id].add(event.account_id)
    members, cycles = {root}, set()
    frontier: list[tuple[str, tuple[str, ...]]] = [(root, (root,))]
    for _ in range(DEPTH_MAX):
        following = []
        for node, path in frontier:
            for child in children.get(node, ()):
                if child in path:
                    cycles.add(child)
                    continue
                members.add(child)
                following.append((child, (*path, child)))
        frontier = following
    return members, cycles


def totals(events: list[AccountEvent], partitions: int) -> dict[str, dict[str, int]]:
    """Per currency: sums of the newest states, external flows and money in flight."""
    newest = {account: history[-1] for account, history in by_account(events).items()}
    result: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for event in newest.values():
        row = result[event.currency]
        row["accounts"] += 1
        for name in ("balance", "held", "pending_in", "pending_out"):
            row[name] += getattr(event, name)
        row["available"] += event.balance - event.held
    # Transfers: debited on one partition; credited on another is in flight until settled.
    debited_at: dict[str, int] = {}
    credited: dict[str, tuple[str, int, int]] = {}
    settled: set[str] = set()
    # Per batch and currency: the participants not decided yet, and the money committed so far.
    batches: dict[tuple[str, str], tuple[set[str], int]] = collections.defaultdict(lambda: (set(), 0))
    for event in events:
        row = result[event.currency]
        row["events"] += 1
        if event.kind is EventKind.DEPOSITED:
            row["deposits"] += event.amount
        elif event.kind is EventKind.WITHDRAWN:
            row["withdrawals"] -= event.amount
        elif event.kind is EventKind.TRANSFER_DEBITED:
            debited_at[event.correlation_id or ""] = partition_for(event.account_id, partitions)
        elif event.kind is EventKind.TRANSFER_CREDITED:
            credited[event.correlation_id or ""] = (
                event.currency,
                partition_for(event.account_id, partitions),
                event.amount,
            )
        elif event.kind is EventKind.TRANSFER_SETTLED:
            settled.add(event.correlation_id or "")
        elif event.kind is EventKind.BATCH_PREPARED:
            batches[(event.correlation_id or "", event.currency)][0].add(event.account_id)
        elif event.kind in (EventKind.BATCH_COMMITTED, EventKind.BATCH_RELEASED):
            undecided, committed = batches[(event.correlation_id or "", event.currency)]
            undecided.discard(event.account_id)  # a participant's postings: one event each
            batches[(event.correlation_id or "", event.currency)] = (undecided, committed + event.amount)
    for transfer_id, (currency, partition, amount) in credited.items():
        if transfer_id not in settled and debited_at.get(transfer_id) != partition:
            result[currency]["credits_in_flight"] += amount
    for (_, currency), (undecided, committed) in batches.items():
        if undecided:
            result[currency]["batches_in_flight"] += committed
    for row in result.values():
        row["external_net"] = row["deposits"] - row["withdrawals"]
        in_flight = row["credits_in_flight"] + row["batches_in_flight"]
        row["drift"] = row["balance"] + row["pending_out"] - in_flight - row["external_net"]
    names = (
        *("accounts", "events", "balance", "held", "available", "pending_in", "pending_out", "deposits"),
        *("withdrawals", "external_net", "credits_in_flight", "batches_in_flight", "drift"),
    )
    return {currency: {name: row[name] for name in names} for currency, row in result.items()}
