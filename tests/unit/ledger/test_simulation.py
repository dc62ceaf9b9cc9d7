"""Seeded simulation: thousands of random commands over 3-4 shards, legs delivered in a
random order (FIFO per shard), time passing, duplicates and retries, checked by an
auditor that knows nothing but the AccountEvent stream and the results.

The auditor rebuilds every account from its events (the latest event carries the full
state; sequences are gap-free; amounts and held changes add up to the balances), checks
that money is conserved (balances = deposits - withdrawals once nothing is in flight;
every transfer, capture, reversal and batch nets to zero), that every command got
exactly one final result, and that the events of a rejected command net to zero.
The routing is Kafka's (murmur2), as in production.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from typing import Any

import pytest

from ledger.commands import (
    Batch,
    BatchLeg,
    CaptureHold,
    CloseAccount,
    Deposit,
    LockAccount,
    OpenAccount,
    PlaceHold,
    QueryCommand,
    ReverseTransfer,
    Transfer,
    UnlockAccount,
    UpdateLimits,
    VoidHold,
    Withdraw,
)
from ledger.events import AccountEvent, CommandResult, EventKind, ResultStatus
from ledger.limits import AMOUNT_MAX
from ledger.shard import Outcome, ShardConfig
from tests.principals import TESTER
from tests.unit.ledger.cluster import (
    Auditor,
    Cluster,
    Input,
    check_deterministic,
    check_one_result_each,
    check_quiescent,
    check_state,
    submitted_commands,
)
from topologies.partitioning import partition_for

ACCEPTED = ResultStatus.ACCEPTED


class Workload:
    """A stream of random commands over a fixed population of accounts."""

    def __init__(self, rng: random.Random, accounts: int) -> None:
        self.rng = rng
        self.accounts = [f"acct-{index:03d}" for index in range(accounts)]
        self.currency = {a: "JPY" if rng.random() < 0.2 else "USD" for a in self.accounts}
        self.serial = 0
        self.sent: list[Any] = []  # mutating commands, for duplicates
        self.holds: list[tuple[str, str]] = []  # placed holds (account, hold id)
        self.credited: list[tuple[str, str]] = []  # (destination, transfer id) of accepted transfers

    def ids(self) -> dict[str, Any]:
        self.serial += 1
        return {"command_id": f"c{self.serial}", "dedup_id": f"d{self.serial}"}

    def account(self) -> str:
        return self.rng.choice(self.accounts)

    def amount(self) -> int:
        return self.rng.choice([1, 5, 10, 50, 100, 250, 1_000, self.rng.randint(1, 3_000)])

    def currency_of(self, account: str) -> str:
        if self.rng.random() < 0.03:
            return "JPY" if self.currency[account] == "USD" else "USD"
        return self.currency[account]

    def openings(self) -> list[Any]:
        commands = []
        for account in self.accounts:
            lower = self.rng.choice([0, 0, 0, -2_000])
            upper = self.rng.choice([AMOUNT_MAX, AMOUNT_MAX, 20_000])
            parent = self.rng.choice([None, None, self.accounts[0]])
            commands.append(
                OpenAccount(
                    principal=TESTER,
                    owner=TESTER.principal_id,
                    **self.ids(),
                    account_id=account,
                    currency=self.currency[account],
                    lower_limit=lower,
                    upper_limit=upper,
                    parent_account_id=parent if parent != account else None,
                    metadata={"tier": self.rng.choice(["gold", "basic"])},
                )
            )
        return commands

    def observe(self, result: CommandResult) -> None:
        if result.status is not ACCEPTED or result.replayed:
            return
        if result.command_type == "PlaceHold":
            self.holds.append((result.positions[0].account_id, result.reference_id or ""))
        elif result.command_type == "Transfer":
            self.credited.append((result.positions[1].account_id, result.reference_id or ""))

    def next(self) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.16:
            account = self.account()
            amount = self.amount() * rng.choice([1, 2, 5])
            return Deposit(
                principal=TESTER, **self.ids(), account_id=account, amount=amount, currency=self.currency_of(account)
            )
        if roll < 0.24:
            account = self.account()
            return Withdraw(
                principal=TESTER,
                **self.ids(),
                account_id=account,
                amount=self.amount(),
                currency=self.currency_of(account),
            )
        if roll < 0.50:
            source, destination = self.account(), self.account()
            if source == destination:
                destination = self.account()
            return Transfer(
                principal=TESTER,
                **self.ids(),
                from_account_id=source,
                to_account_id=destination,
                amount=self.amount(),
                currency=self.currency_of(source),
                metadata={"ref": f"inv-{self.serial}"},
            )
        if roll < 0.58:
            return self.batch()
        if roll < 0.66:
            account = self.account()
            return PlaceHold(
                principal=TESTER,
                **self.ids(),
                account_id=account,
                hold_id=f"h{self.serial}",
                amount=self.amount(),
                currency=self.currency[account],
                ttl_ms=rng.choice([200, 2_000, 10_000, 600_000]),
            )
        if roll < 0.72 and self.holds:
            account, hold_id = rng.choice(self.holds[-50:])
            amount = rng.choice([1, 10, 100, 1_000, self.amount()])
            return CaptureHold(
                principal=TESTER,
                **self.ids(),
                account_id=account,
                hold_id=hold_id,
                amount=amount,
                to_account_id=self.account(),
                currency=self.currency[account],
            )
        if roll < 0.76 and self.holds:
            account, hold_id = rng.choice(self.holds[-50:])
            return VoidHold(principal=TESTER, **self.ids(), account_id=account, hold_id=hold_id)
        if roll < 0.80 and self.credited:
            account, transfer_id = rng.choice(self.credited[-100:])
            return ReverseTransfer(
                principal=TESTER, **self.ids(), account_id=account, transfer_id=transfer_id, reason="chargeback"
            )
        if roll < 0.805:
            return LockAccount(principal=TESTER, **self.ids(), account_id=self.account(), reason="review")
        if roll < 0.845:
            return UnlockAccount(principal=TESTER, **self.ids(), account_id=self.account())
        if roll < 0.86:
            ids, account = self.ids(), self.account()
            return UpdateLimits(
                principal=TESTER,
                **ids,
                account_id=account,
                lower_limit=rng.choice([0, -500, -2_000]),
                upper_limit=rng.choice([AMOUNT_MAX, 5_000, 50_000]),
                currency=self.currency.get(account, "USD"),
            )
        if roll < 0.865:
            return CloseAccount(principal=TESTER, **self.ids(), account_id=self.account())
        if roll < 0.89 and self.sent:
            target = rng.choice(self.sent[-200:])
            return QueryCommand(
                principal=TESTER,
                command_id=self.ids()["command_id"],
                account_id=target.routing_key,
                target_command_id=target.command_id,
            )
        if roll < 0.95 and self.sent:  # a retry: same dedup id, same payload
            return dataclasses.replace(rng.choice(self.sent[-100:]), command_id=self.ids()["command_id"])
        if roll < 0.97 and self.sent:  # a retry with another payload
            original = rng.choice(self.sent[-100:])
            if isinstance(original, Deposit | Withdraw | Transfer):
                return dataclasses.replace(original, command_id=self.ids()["command_id"], amount=original.amount + 1)
        # Something malformed or invalid.
        account = self.account()
        return rng.choice(
            [
                Deposit(principal=TESTER, **self.ids(), account_id=account, amount=0, currency="USD"),
                Transfer(
                    principal=TESTER,
                    **self.ids(),
                    from_account_id=account,
                    to_account_id=account,
                    amount=5,
                    currency="USD",
                ),
                Withdraw(principal=TESTER, **self.ids(), account_id=account, amount=5, currency="usd"),
                PlaceHold(
                    principal=TESTER, **self.ids(), account_id=account, hold_id="x", amount=5, currency="USD", ttl_ms=0
                ),
                Deposit(
                    principal=TESTER,
                    command_id=f"bad id {self.serial}",
                    dedup_id="d",
                    account_id=account,
                    amount=5,
                    currency="USD",
                ),
            ]
        )

    def batch(self) -> Batch:
        rng = self.rng
        size = rng.choice([2, 2, 3, 4])
        accounts = rng.sample(self.accounts, size) if rng.random() > 0.05 else [self.accounts[0]] * size
        currency = rng.choice(["USD", "USD", "USD", "JPY"])
        amounts = [rng.randint(1, 500) for _ in range(size - 1)]
        debit_first = rng.random() < 0.5
        signed = [-sum(amounts), *amounts] if debit_first else [sum(amounts), *(-a for a in amounts)]
        if rng.random() < 0.03:
            signed[0] += 1  # unbalanced
        legs = [BatchLeg(account_id=a, amount=m, currency=currency) for a, m in zip(accounts, signed, strict=True)]
        return Batch(
            principal=TESTER, **self.ids(), batch_id=f"batch-{self.serial}", legs=legs, metadata={"kind": "settlement"}
        )


@dataclasses.dataclass
class Report:
    commands: int = 0
    inputs: int = 0
    events: int = 0
    accepted: int = 0
    kinds: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    codes: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))


def _events_by_command(events: list[AccountEvent]) -> dict[str, list[AccountEvent]]:
    grouped: dict[str, list[AccountEvent]] = defaultdict(list)
    for event in events:
        grouped[event.command_id].append(event)
    return grouped


def audit_results(cluster: Cluster, auditor: Auditor) -> None:
    """Results against the event stream: exactly one per command; a rejection's events
    (a compensated debit, a released reservation) net to zero; an accepted deposit or
    withdrawal is exactly its one event; a replay is the original's result."""
    check_one_result_each(cluster, settled=True)
    events = _events_by_command(cluster.events)
    by_command = {result.command_id: result for result in cluster.results}
    reversals: dict[str, int] = defaultdict(int)
    for command in submitted_commands(cluster):
        result = by_command[command.command_id]
        if isinstance(command, ReverseTransfer) and result.status is ACCEPTED and not result.replayed:
            reversals[command.transfer_id] += 1
            assert reversals[command.transfer_id] == 1, f"transfer {command.transfer_id} reversed twice"
        if result.replayed:
            original = by_command[result.original_command_id]
            assert dataclasses.replace(result, command_id=original.command_id, replayed=False) == original
            continue
        mine = [e for e in events.get(command.command_id, []) if e.kind is not EventKind.HOLD_EXPIRED]
        if result.status is ResultStatus.REJECTED:
            assert sum(event.amount for event in mine) == 0, (result, mine)
            assert all(event.kind is not EventKind.OPENED for event in mine)
        elif isinstance(command, Deposit | Withdraw):
            sign = 1 if isinstance(command, Deposit) else -1
            assert [(e.kind, e.amount) for e in mine] == [
                (EventKind.DEPOSITED if sign > 0 else EventKind.WITHDRAWN, sign * command.amount)
            ]
    auditor.check_settled()
    auditor.check_matches(cluster)


def simulate(seed: int, shards: int, commands: int, *, deterministic_check: bool = True) -> Report:
    rng = random.Random(seed)
    cluster = Cluster(
        shards,
        config=ShardConfig(retention_ms=120_000, batch_timeout_ms=2_000),
        route=lambda key: partition_for(key, shards),
    )
    auditor = Auditor()
    workload = Workload(rng, accounts=40)
    external: dict[str, int] = defaultdict(int)
    report = Report()

    def observe(record: Input, outcome: Outcome) -> None:
        auditor.observe_all(outcome.events)
        for result in outcome.results:
            workload.observe(result)
            report.codes[result.code.value if result.code else "ACCEPTED"] += 1
            if result.status is ACCEPTED and not result.replayed and result.command_type in ("Deposit", "Withdraw"):
                message = record.message  # decided at once, by the message that carried it
                assert isinstance(message, Deposit | Withdraw) and message.command_id == result.command_id
                external[message.currency] += message.amount if isinstance(message, Deposit) else -message.amount
        for event in outcome.events:
            report.kinds[event.kind.value] += 1

    cluster.observers.append(observe)
    for command in workload.openings():
        cluster.submit(command)

    stall_until = 0
    for step in range(commands):
        command = workload.next()
        if not isinstance(command, QueryCommand):
            workload.sent.append(command)
        cluster.now += rng.choice([0, 1, 5, 20, 50])
        cluster.submit(command)
        if step >= stall_until:
            for _ in range(rng.choice([0, 1, 1, 2, 3, 8])):
                cluster.deliver_any(rng)
            if rng.random() < 0.004:
                stall_until = step + rng.randint(10, 60)  # legs pile up; batches may time out
        if rng.random() < 0.05:
            cluster.now += rng.choice([100, 1_000, 3_000])
            cluster.tick(rng.randrange(shards) if rng.random() < 0.5 else None)
        if step % 1_000 == 999:
            check_state(cluster, external)
            cluster.drain(rng)
            check_quiescent(cluster)
            check_state(cluster, external)
            audit_results(cluster, auditor)
    cluster.drain(rng)
    cluster.advance(700_000)  # every hold expires, retention forgets
    check_quiescent(cluster)
    check_state(cluster, external)
    audit_results(cluster, auditor)
    assert {c: v for c, v in auditor.external.items() if v} == {c: v for c, v in external.items() if v}
    if deterministic_check:
        check_deterministic(cluster, encode=True)
    report.commands = len(submitted_commands(cluster))
    report.inputs = len(cluster.inputs)
    report.events = len(cluster.events)
    report.accepted = sum(1 for r in cluster.results if r.status is ACCEPTED and not r.replayed)
    return report


@pytest.mark.parametrize(("seed", "shards"), [(1, 3), (2, 4), (3, 3)])
def test_simulation(seed: int, shards: int) -> None:
    report = simulate(seed, shards, 5_000)
    assert report.commands >= 5_000
    # The workload reaches every corner it is meant to.
    for kind in (
        "TRANSFER_SETTLED",
        "TRANSFER_REFUNDED",
        "CAPTURE_SETTLED",
        "HOLD_EXPIRED",
        "HOLD_VOIDED",
        "REVERSAL_SETTLED",
        "BATCH_COMMITTED",
        "BATCH_RELEASED",
    ):
        assert report.kinds.get(kind, 0) > 0, (kind, dict(report.kinds))
    for code in (
        "INSUFFICIENT_FUNDS",
        "DEDUP_CONFLICT",
        "CURRENCY_MISMATCH",
        "HOLD_ALREADY_FINALIZED",
        "ACCOUNT_LOCKED",
    ):
        assert report.codes.get(code, 0) > 0, (code, dict(report.codes))


def test_simulation_is_reproducible() -> None:
    first = simulate(7, 3, 1_000, deterministic_check=False)
    second = simulate(7, 3, 1_000, deterministic_check=False)
    assert first == second
