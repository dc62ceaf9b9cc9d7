"""A deliberately simple reference model of single-account commands (open, deposit,
withdraw, dedup), written independently of ledger/ to check it from the outside."""

from __future__ import annotations

import dataclasses
from typing import Any

from ledger import commands
from tests.principals import TESTER


@dataclasses.dataclass
class Expected:
    status: str  # "ACCEPTED" or "REJECTED"
    code: str | None
    replayed: bool = False


class SingleAccountModel:
    def __init__(self) -> None:
        self.currency: dict[str, str] = {}
        self.balance: dict[str, int] = {}
        self._dedup: dict[tuple[str, str], tuple[Any, Expected]] = {}

    def apply(self, command: commands.Command) -> Expected:
        assert isinstance(command, commands.OpenAccount | commands.Deposit | commands.Withdraw)
        if isinstance(command, commands.Withdraw) and command.account_id not in self.currency:
            # An account that does not exist is nobody's: refused before the dedup memory, not remembered.
            return Expected("REJECTED", "FORBIDDEN")
        key = (command.account_id, command.dedup_id)
        payload = {name: getattr(command, name) for name in command.__dataclass_fields__ if name != "command_id"}
        payload["type"] = type(command).__name__
        if key in self._dedup:
            first_payload, first = self._dedup[key]
            if first_payload != payload:
                return Expected("REJECTED", "DEDUP_CONFLICT")
            return dataclasses.replace(first, replayed=True)
        outcome = self._decide(command)
        self._dedup[key] = (payload, outcome)
        return outcome

    def _decide(self, command: commands.Command) -> Expected:
        if isinstance(command, commands.OpenAccount):
            if command.account_id in self.currency:
                return Expected("REJECTED", "ACCOUNT_EXISTS")
            self.currency[command.account_id] = command.currency
            self.balance[command.account_id] = 0
            return Expected("ACCEPTED", None)
        assert isinstance(command, commands.Deposit | commands.Withdraw)
        if command.amount <= 0:
            return Expected("REJECTED", "INVALID_AMOUNT")
        if command.account_id not in self.currency:
            return Expected("REJECTED", "ACCOUNT_NOT_FOUND")
        if self.currency[command.account_id] != command.currency:
            return Expected("REJECTED", "CURRENCY_MISMATCH")
        if isinstance(command, commands.Withdraw):
            if self.balance[command.account_id] < command.amount:
                return Expected("REJECTED", "INSUFFICIENT_FUNDS")
            self.balance[command.account_id] -= command.amount
        else:
            self.balance[command.account_id] += command.amount
        return Expected("ACCEPTED", None)


def single_account_workload(rng: Any, *, accounts: list[str], count: int, prefix: str) -> list[commands.Command]:
    """Opens, deposits and withdrawals in random order, with duplicates, dedup conflicts,
    invalid amounts, wrong currencies and commands for accounts not opened (yet)."""
    currency = {account: rng.choice(["USD", "EUR", "JPY"]) for account in accounts}
    sent: list[commands.Command] = []
    for index in range(count):
        account = rng.choice(accounts)
        roll = rng.random()
        command: commands.Command
        if roll < 0.08:
            command = commands.OpenAccount(
                principal=TESTER,
                owner=TESTER.principal_id,
                command_id=f"{prefix}-{index}",
                dedup_id=f"open-{account}-{index % 3}",
                account_id=account,
                currency=currency[account],
            )
        elif roll < 0.16 and sent:
            original = rng.choice(sent)
            fields = {name: getattr(original, name) for name in original.__dataclass_fields__}
            fields["command_id"] = f"{prefix}-{index}"
            if rng.random() < 0.2 and isinstance(original, commands.Deposit | commands.Withdraw):
                fields["amount"] = original.amount + 1  # same dedup id, other payload
            command = type(original)(**fields)
        else:
            kind = commands.Deposit if roll < 0.6 else commands.Withdraw
            amount = rng.choice([0, -5]) if rng.random() < 0.03 else rng.randint(1, 10_000)
            code = currency[account] if rng.random() > 0.03 else "GBP"
            command = kind(
                principal=TESTER,
                command_id=f"{prefix}-{index}",
                dedup_id=f"{prefix}-d{index}",
                account_id=account,
                amount=amount,
                currency=code,
            )
        sent.append(command)
    return sent
