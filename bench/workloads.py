"""Seeded command workloads for benchmarks and randomized tests.

A workload is a plain list of commands over a fixed set of accounts; the accounts'
partitions are known (Kafka's murmur2), so a workload can ask for same-partition or
cross-partition transfers and batches on purpose.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence

from bench.principal import BENCH_PRINCIPAL
from ledger import commands
from topologies import partition_for

CURRENCIES = ("USD", "EUR")
KEY_SEARCH_MAX = 100_000


@dataclasses.dataclass(frozen=True, slots=True)
class Accounts:
    ids: list[str]
    currency: dict[str, str]
    partition: dict[str, int]

    def by_partition(self, partition: int, currency: str) -> list[str]:
        return [a for a in self.ids if self.partition[a] == partition and self.currency[a] == currency]


def make_accounts(prefix: str, count: int, *, partitions: int, currencies: Sequence[str] = CURRENCIES) -> Accounts:
    ids = [f"{prefix}-{index}" for index in range(count)]
    return Accounts(
        ids=ids,
        currency={account: currencies[index % len(currencies)] for index, account in enumerate(ids)},
        partition={account: partition_for(account, partitions) for account in ids},
    )


def one_key_per_partition(prefix: str, partitions: int) -> list[str]:
    """Keys `<prefix>-<n>`, the one at index p on partition p (Kafka's murmur2 of the key): a
    probe sent with each reaches every partition."""
    keys: dict[int, str] = {}
    for index in range(KEY_SEARCH_MAX):
        key = f"{prefix}-{index}"
        keys.setdefault(partition_for(key, partitions), key)
        if len(keys) == partitions:
            return [keys[partition] for partition in range(partitions)]
    raise ValueError(f"no key of {prefix!r} on each of {partitions} partitions within {KEY_SEARCH_MAX} tries")


class Ids:
    """Unique command and dedup ids for one workload."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.counter = 0

    def __call__(self, kind: str = "c") -> str:
        self.counter += 1
        return f"{self.prefix}-{kind}{self.counter}"


def openings(
    accounts: Accounts,
    ids: Ids,
    *,
    rng: random.Random | None = None,
    parents: Mapping[str, str] | None = None,
) -> list[commands.Command]:
    """Open every account; with an rng, some get a credit line or a ceiling; `parents`
    (account -> parent) puts accounts in a hierarchy (a parent must come first)."""
    opened: list[commands.Command] = []
    for account in accounts.ids:
        lower, upper = 0, 2**63 - 1
        if rng is not None and rng.random() < 0.1:
            lower = -rng.randint(1_000, 50_000)
        if rng is not None and rng.random() < 0.1:
            upper = rng.randint(200_000, 2_000_000)
        opened.append(
            commands.OpenAccount(
                principal=BENCH_PRINCIPAL,
                owner=BENCH_PRINCIPAL.principal_id,
                command_id=ids(),
                dedup_id="open",
                account_id=account,
                currency=accounts.currency[account],
                lower_limit=lower,
                upper_limit=upper,
                parent_account_id=None if parents is None else parents.get(account),
            )
        )
    return opened


def deposits_to_each(accounts: Accounts, ids: Ids, *, amount: int, dedup_id: str) -> list[commands.Command]:
    """One deposit of `amount` into every account (funding before a workload)."""
    return [
        commands.Deposit(
            principal=BENCH_PRINCIPAL,
            command_id=ids(),
            dedup_id=dedup_id,
            account_id=account,
            amount=amount,
            currency=accounts.currency[account],
        )
        for account in accounts.ids
    ]


def transfer(ids: Ids, source: str, target: str, amount: int, currency: str) -> commands.Transfer:
    return commands.Transfer(
        principal=BENCH_PRINCIPAL,
        command_id=ids(),
        dedup_id=ids("d"),
        from_account_id=source,
        to_account_id=target,
        amount=amount,
        currency=currency,
    )


def pair(accounts: Accounts, rng: random.Random, *, cross: bool) -> tuple[str, str]:
    """Two accounts of one currency on the same partition, or on different ones."""
    while True:
        source = rng.choice(accounts.ids)
        currency = accounts.currency[source]
        candidates = [
            account
            for account in accounts.ids
            if account != source
            and accounts.currency[account] == currency
            and (accounts.partition[account] != accounts.partition[source]) == cross
        ]
        if candidates:
            return source, rng.choice(candidates)


def batch_legs(accounts: Accounts, rng: random.Random, size: int, amount: int) -> list[commands.BatchLeg]:
    """`size` accounts of one currency on different partitions: one or more debits, one credit."""
    currency = rng.choice(CURRENCIES)
    chosen: list[str] = []
    used_partitions: set[int] = set()
    for account in rng.sample(accounts.ids, len(accounts.ids)):
        if accounts.currency[account] == currency and accounts.partition[account] not in used_partitions:
            chosen.append(account)
            used_partitions.add(accounts.partition[account])
            if len(chosen) == size:
                break
    debits = [rng.randint(1, amount) for _ in chosen[1:]]
    return [
        commands.BatchLeg(account_id=chosen[0], amount=sum(debits), currency=currency),
        *(
            commands.BatchLeg(account_id=account, amount=-debit, currency=currency)
            for account, debit in zip(chosen[1:], debits, strict=True)
        ),
    ]


def mixed(accounts: Accounts, ids: Ids, rng: random.Random, count: int) -> list[commands.Command]:
    """Everything the ledger does, at random, with duplicates and invalid commands."""
    sent: list[commands.Command] = []
    open_holds: list[tuple[str, str, int]] = []
    for _ in range(count):
        roll = rng.random()
        account = rng.choice(accounts.ids)
        currency = accounts.currency[account]
        command: commands.Command
        if roll < 0.14:
            command = commands.Deposit(
                principal=BENCH_PRINCIPAL,
                command_id=ids(),
                dedup_id=ids("d"),
                account_id=account,
                amount=rng.randint(1, 20_000),
                currency=currency,
            )
        elif roll < 0.20:
            command = commands.Withdraw(
                principal=BENCH_PRINCIPAL,
                command_id=ids(),
                dedup_id=ids("d"),
                account_id=account,
                amount=rng.randint(1, 10_000),
                currency=currency,
            )
        elif roll < 0.34:
            source, target = pair(accounts, rng, cross=False)
            command = transfer(ids, source, target, rng.randint(1, 5_000), accounts.currency[source])
        elif roll < 0.58:
            source, target = pair(accounts, rng, cross=True)
            command = transfer(ids, source, target, rng.randint(1, 5_000), accounts.currency[source])
        elif roll < 0.66:
            command = commands.Batch(
                principal=BENCH_PRINCIPAL,
                command_id=ids(),
                dedup_id=ids("d"),
                batch_id=ids("batch"),
                legs=batch_legs(accounts, rng, rng.randint(2, 5), 3_000),
            )
        elif roll < 0.72:
            hold_id = ids("hold")
            amount = rng.randint(1, 3_000)
            ttl_ms = rng.choice([300, 2_000, 60_000])
            open_holds.append((account, hold_id, amount))
            command = commands.PlaceHold(
                principal=BENCH_PRINCIPAL,
                command_id=ids(),
                dedup_id=ids("d"),
                account_id=account,
                hold_id=hold_id,
                amount=amount,
                currency=currency,
                ttl_ms=ttl_ms,
            )
        elif roll < 0.78 and open_holds:
            held_account, hold_id, amount = open_holds.pop(rng.randrange(len(open_holds)))
            if rng.random() < 0.6:
                target = rng.choice(
                    [
                        a
                        for a in accounts.ids
                        if a != held_account and accounts.currency[a] == accounts.currency[held_account]
                    ]
                )
                command = commands.CaptureHold(
                    principal=BENCH_PRINCIPAL,
                    command_id=ids(),
                    dedup_id=ids("d"),
                    account_id=held_account,
                    hold_id=hold_id,
                    amount=rng.randint(1, amount),
                    to_account_id=target,
                    currency=accounts.currency[held_account],
                )
            else:
                command = commands.VoidHold(
                    principal=BENCH_PRINCIPAL,
                    command_id=ids(),
                    dedup_id=ids("d"),
                    account_id=held_account,
                    hold_id=hold_id,
                )
        elif roll < 0.88 and sent:
            original = rng.choice(sent)
            fields = {name: getattr(original, name) for name in original.__dataclass_fields__}
            command = type(original)(**{**fields, "command_id": ids()})  # a retry: same dedup id
        else:
            command = _invalid(accounts, ids, rng, account)
        sent.append(command)
    return sent


def _invalid(accounts: Accounts, ids: Ids, rng: random.Random, account: str) -> commands.Command:
    currency = accounts.currency[account]
    other = "EUR" if currency == "USD" else "USD"
    choice = rng.randrange(7)
    if choice == 0:  # an account that does not exist, on another partition
        source = rng.choice(accounts.ids)
        return transfer(ids, source, f"ghost-{rng.randrange(10**6)}", 10, accounts.currency[source])
    if choice == 1:  # far more than anyone has
        source, target = pair(accounts, rng, cross=True)
        return transfer(ids, source, target, 10**12, accounts.currency[source])
    if choice == 2:
        return commands.Deposit(
            principal=BENCH_PRINCIPAL, command_id=ids(), dedup_id=ids("d"), account_id=account, amount=5, currency=other
        )
    if choice == 3:
        return commands.Withdraw(
            principal=BENCH_PRINCIPAL,
            command_id=ids(),
            dedup_id=ids("d"),
            account_id=account,
            amount=0,
            currency=currency,
        )
    if choice == 4:
        return transfer(ids, account, account, 5, currency)
    legs = batch_legs(accounts, rng, rng.randint(2, 4), 500)
    if choice == 5:  # a leg on an account that does not exist: every prepared leg is released
        ghost = commands.BatchLeg(
            account_id=f"ghost-{rng.randrange(10**6)}", amount=legs[0].amount, currency=legs[0].currency
        )
        legs = [ghost, *legs[1:]]
    else:  # one debit far beyond what the account has
        big = 10**12
        legs = [
            dataclasses.replace(legs[0], amount=legs[0].amount + big),
            dataclasses.replace(legs[1], amount=legs[1].amount - big),
            *legs[2:],
        ]
    return commands.Batch(
        principal=BENCH_PRINCIPAL, command_id=ids(), dedup_id=ids("d"), batch_id=ids("batch"), legs=legs
    )


def same_partition_transfers(accounts: Accounts, ids: Ids, rng: random.Random, count: int) -> list[commands.Command]:
    """`count` transfers of 1 between two accounts of one currency on one partition, the
    accounts grouped once (`pair` scans every account for each transfer: too slow for the
    hundreds of thousands a bulk benchmark sends)."""
    groups: dict[tuple[int, str], list[str]] = {}
    for account in accounts.ids:
        groups.setdefault((accounts.partition[account], accounts.currency[account]), []).append(account)
    usable = [group for group in groups.values() if len(group) > 1]
    result: list[commands.Command] = []
    for _ in range(count):
        group = rng.choice(usable)
        source, target = rng.sample(group, 2)
        result.append(transfer(ids, source, target, 1, accounts.currency[source]))
    return result
