"""A seeded generator of AccountEvent streams for the query side's benchmark and tests.

It plays a small ledger of its own (not ledger/shard.py): opens with a parent hierarchy
(chains, a cycle, roots), deposits, withdrawals, holds, transfers inside a partition and
across partitions (debit with pending_out, then credit and settle, or refund), and
batches across partitions (prepare, then commit or release leg by leg; a debit of an even
amount commits as two postings, a payment and its fee). Work in flight
at the end stays in flight, so conservation has to account for it. Partitions follow
Kafka's murmur2 partitioner of the account id, as the events topic is keyed.

Expected values are never taken from here: the tests fold the events themselves.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator

from bench.principal import BENCH_PRINCIPAL
from ledger.accounts import AccountStatus
from ledger.errors import ErrorCode
from ledger.events import AccountEvent, EventKind
from topologies import partition_for

CURRENCIES = ("USD", "EUR", "JPY")
UPPER_LIMIT = 10**15
HOUR_MS = 3_600_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclasses.dataclass(slots=True)
class _Account:
    account_id: str
    currency: str
    parent: str | None
    partition: int
    sequence: int = 0
    balance: int = 0
    held: int = 0
    pending_in: int = 0
    pending_out: int = 0


@dataclasses.dataclass(slots=True)
class _Pending:
    """A step that happens later on another partition (a leg on its way)."""

    due: int  # generator step
    kind: str
    data: dict[str, object]


class Workload:
    def __init__(self, seed: int, *, accounts: int, partitions: int = 8, prefix: str = "acct") -> None:
        self.rng = random.Random(seed)
        self.partitions = partitions
        self.prefix = prefix
        self.account_count = accounts
        self.accounts: dict[str, _Account] = {}
        self.ids: list[str] = []
        self.by_currency: dict[str, list[_Account]] = {currency: [] for currency in CURRENCIES}
        self.now_ms = START_MS
        self.step = 0
        self.pending: list[_Pending] = []
        self.serial = 0

    # -- emitting ---------------------------------------------------------------------------

    def _emit(
        self,
        account: _Account,
        kind: EventKind,
        *,
        amount: int = 0,
        held_change: int = 0,
        correlation_id: str | None = None,
        counterparty: str | None = None,
        code: ErrorCode | None = None,
        metadata: dict[str, str] | None = None,
    ) -> AccountEvent:
        account.sequence += 1
        self.serial += 1
        return AccountEvent(
            account_id=account.account_id,
            sequence=account.sequence,
            kind=kind,
            amount=amount,
            held_change=held_change,
            currency=account.currency,
            balance=account.balance,
            held=account.held,
            available=account.balance - account.held,
            pending_in=account.pending_in,
            pending_out=account.pending_out,
            lower_limit=0,
            upper_limit=UPPER_LIMIT,
            status=AccountStatus.ACTIVE,
            parent_account_id=account.parent,
            metadata=metadata,
            command_id=f"c{self.serial}",
            dedup_id=f"d{self.serial}",
            correlation_id=correlation_id,
            counterparty_account_id=counterparty,
            code=code,
            occurred_at_ms=self.now_ms,
            owner=f"holder-{account.account_id}",
            principal=BENCH_PRINCIPAL,
        )

    # -- the stream ---------------------------------------------------------------------------

    def events(self, count: int) -> Iterator[AccountEvent]:
        """About `count` events (a step may emit two), in the order a ledger would commit them."""
        emitted = 0
        for event in self._open_all():
            emitted += 1
            yield event
        while emitted < count:
            self.step += 1
            self.now_ms += self.rng.randint(1, HOUR_MS // 20)  # several UTC days over a few thousand events
            due = [item for item in self.pending if item.due <= self.step]
            self.pending = [item for item in self.pending if item.due > self.step]
            for item in due:
                for event in self._complete(item):
                    emitted += 1
                    yield event
            for event in self._operation():
                emitted += 1
                yield event

    def _open_all(self) -> Iterator[AccountEvent]:
        ids = [f"{self.prefix}-{index:05d}" for index in range(self.account_count)]
        parents: dict[str, str | None] = dict.fromkeys(ids)
        # A chain a few levels deep, a couple of wide families, and a two-account cycle.
        chain = ids[: min(6, len(ids))]
        for child, parent in zip(chain[1:], chain[:-1], strict=False):
            parents[child] = parent
        for index, account_id in enumerate(ids[6:], start=6):
            if index % 3 == 0:
                parents[account_id] = ids[self.rng.randrange(0, 6)]
            elif index % 3 == 1 and index > 12:
                parents[account_id] = ids[self.rng.randrange(6, index)]
        if len(ids) >= 10:
            parents[ids[-1]], parents[ids[-2]] = ids[-2], ids[-1]
        for account_id in ids:
            account = _Account(
                account_id=account_id,
                currency=self.rng.choice(CURRENCIES) if account_id not in chain else "USD",
                parent=parents[account_id],
                partition=partition_for(account_id, self.partitions),
            )
            self.accounts[account_id] = account
            self.ids.append(account_id)
            self.by_currency[account.currency].append(account)
            self.now_ms += 1
            yield self._emit(account, EventKind.OPENED, metadata={"owner": account_id})

    def _operation(self) -> list[AccountEvent]:
        rng = self.rng
        account = self.accounts[rng.choice(self.ids)]
        roll = rng.random()
        amount = rng.randint(1, 5_000)
        if roll < 0.35 or account.balance - account.held < 10:
            account.balance += amount
            return [self._emit(account, EventKind.DEPOSITED, amount=amount, metadata={"channel": "card"})]
        available = account.balance - account.held
        amount = rng.randint(1, max(1, available // 2))
        if roll < 0.45:
            account.balance -= amount
            return [self._emit(account, EventKind.WITHDRAWN, amount=-amount)]
        if roll < 0.52:
            account.held += amount
            hold = f"h{self.serial}"
            self.pending.append(
                _Pending(self.step + rng.randint(1, 30), "void", {"account": account, "amount": amount})
            )
            return [self._emit(account, EventKind.HOLD_PLACED, held_change=amount, correlation_id=hold)]
        target = rng.choice(self.by_currency[account.currency])
        if target is account:
            return []
        if roll < 0.85:
            return self._transfer(account, target, amount)
        return self._batch(account, amount)

    def _transfer(self, source: _Account, target: _Account, amount: int) -> list[AccountEvent]:
        transfer_id = f"t{self.serial}"
        source.balance -= amount
        if source.partition == target.partition:
            target.balance += amount
            return [
                self._emit(
                    source,
                    EventKind.TRANSFER_DEBITED,
                    amount=-amount,
                    correlation_id=transfer_id,
                    counterparty=target.account_id,
                ),
                self._emit(
                    target,
                    EventKind.TRANSFER_CREDITED,
                    amount=amount,
                    correlation_id=transfer_id,
                    counterparty=source.account_id,
                ),
            ]
        source.pending_out += amount
        refused = self.rng.random() < 0.1
        self.pending.append(
            _Pending(
                self.step + self.rng.randint(1, 20),
                "refund" if refused else "credit",
                {"source": source, "target": target, "amount": amount, "id": transfer_id},
            )
        )
        return [
            self._emit(
                source,
                EventKind.TRANSFER_DEBITED,
                amount=-amount,
                correlation_id=transfer_id,
                counterparty=target.account_id,
            )
        ]

    def _batch(self, source: _Account, amount: int) -> list[AccountEvent]:
        """Two or three legs in one currency that net to zero, prepared now, decided later."""
        batch_id = f"b{self.serial}"
        candidates = self.by_currency[source.currency]
        credited = [
            account for account in self.rng.sample(candidates, k=min(len(candidates), 2)) if account is not source
        ]
        credited = credited[: self.rng.randint(1, 2)]
        if not credited:
            return []
        shares = [amount // len(credited)] * len(credited)
        shares[0] += amount - sum(shares)
        legs = [(source, -amount), *((account, share) for account, share in zip(credited, shares, strict=True))]
        legs = [(account, share) for account, share in legs if share != 0]
        events = []
        for account, share in legs:
            if share < 0:
                account.held += -share
                events.append(
                    self._emit(account, EventKind.BATCH_PREPARED, held_change=-share, correlation_id=batch_id)
                )
            else:
                account.pending_in += share
                events.append(self._emit(account, EventKind.BATCH_PREPARED, correlation_id=batch_id))
        commit = self.rng.random() < 0.85
        for account, share in legs:
            self.pending.append(
                _Pending(
                    self.step + self.rng.randint(2, 25),
                    "batch",
                    {"account": account, "share": share, "commit": commit, "id": batch_id},
                )
            )
        return events

    def _complete(self, item: _Pending) -> list[AccountEvent]:
        data = item.data
        if item.kind == "void":
            account = data["account"]
            amount = data["amount"]
            assert isinstance(account, _Account) and isinstance(amount, int)
            account.held -= amount
            return [self._emit(account, EventKind.HOLD_VOIDED, held_change=-amount)]
        if item.kind == "credit":
            source, target, amount, transfer_id = data["source"], data["target"], data["amount"], data["id"]
            assert isinstance(source, _Account) and isinstance(target, _Account)
            assert isinstance(amount, int) and isinstance(transfer_id, str)
            target.balance += amount
            self.pending.append(
                _Pending(
                    self.step + self.rng.randint(1, 10),
                    "settle",
                    {"source": source, "amount": amount, "id": transfer_id},
                )
            )
            return [
                self._emit(
                    target,
                    EventKind.TRANSFER_CREDITED,
                    amount=amount,
                    correlation_id=transfer_id,
                    counterparty=source.account_id,
                )
            ]
        if item.kind in ("settle", "refund"):
            source, amount, transfer_id = data["source"], data["amount"], data["id"]
            assert isinstance(source, _Account) and isinstance(amount, int) and isinstance(transfer_id, str)
            source.pending_out -= amount
            if item.kind == "settle":
                return [self._emit(source, EventKind.TRANSFER_SETTLED, correlation_id=transfer_id)]
            source.balance += amount
            return [
                self._emit(
                    source,
                    EventKind.TRANSFER_REFUNDED,
                    amount=amount,
                    correlation_id=transfer_id,
                    code=ErrorCode.ACCOUNT_NOT_FOUND,
                )
            ]
        assert item.kind == "batch"
        account, share, commit, batch_id = data["account"], data["share"], data["commit"], data["id"]
        assert isinstance(account, _Account) and isinstance(share, int) and isinstance(batch_id, str)
        held_change = 0
        if share < 0:
            account.held += share
            held_change = share
        else:
            account.pending_in -= share
        if commit and share < -1 and share % 2 == 0:  # a payment and its fee: one event per posting
            account.balance += share + 1
            payment = self._emit(
                account, EventKind.BATCH_COMMITTED, amount=share + 1, held_change=held_change, correlation_id=batch_id
            )
            account.balance -= 1
            return [payment, self._emit(account, EventKind.BATCH_COMMITTED, amount=-1, correlation_id=batch_id)]
        if commit:
            account.balance += share
            return [
                self._emit(
                    account, EventKind.BATCH_COMMITTED, amount=share, held_change=held_change, correlation_id=batch_id
                )
            ]
        return [
            self._emit(
                account,
                EventKind.BATCH_RELEASED,
                held_change=held_change,
                correlation_id=batch_id,
                code=ErrorCode.INSUFFICIENT_FUNDS,
            )
        ]


def generate(seed: int, *, accounts: int, events: int, partitions: int = 8, prefix: str = "acct") -> list[AccountEvent]:
    return list(Workload(seed, accounts=accounts, partitions=partitions, prefix=prefix).events(events))
