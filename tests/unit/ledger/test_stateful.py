"""Stateful property test: every command, three shards, legs delivered in any order.

Hypothesis drives a `Cluster` of three shards through all commands, duplicates (same
and different payload), ticks that advance time, and deliveries of pending legs in
arbitrary interleavings across shards (FIFO per shard, as a Kafka partition). A
deliberately simple model (plain dicts) predicts what it can: account existence and
status, the single-account decisions from the pre-state, dedup replays and conflicts,
external money. After every step: the balance identities, what held / pending_in /
pending_out consist of, conservation of money per currency, each event's after-state
and gap-free sequences (the auditor), at most one final result per command. After
the run: drain, then nothing in flight, exactly one result per command, and replaying
the recorded inputs into fresh shards decides identically, to the byte.

`WindowedLedgerMachine` runs the same with a short idempotency window and a small bound on
what a shard remembers: a new command on a full shard is refused (DEDUP_WINDOW_FULL, nothing
changed, not remembered), a remembered command is never forgotten before its window has
passed, and once it has (and nothing older is in flight) it is.

Budget: well under a minute by default. LEDGER_SOAK=1 (or a number of examples) runs
a long soak: `LEDGER_SOAK=5000 .venv/bin/python -m pytest tests/unit/ledger/test_stateful.py`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ledger.accounts import Account, HoldStatus
from ledger.authorization import debited_accounts
from ledger.commands import (
    AssignOwner,
    Batch,
    BatchLeg,
    CaptureHold,
    CloseAccount,
    Deposit,
    LockAccount,
    MutatingCommand,
    OpenAccount,
    PlaceHold,
    QueryCommand,
    ReverseTransfer,
    SetVelocityRules,
    Transfer,
    UnlockAccount,
    UpdateLimits,
    VoidHold,
    Withdraw,
    validate,
)
from ledger.errors import ErrorCode
from ledger.events import CommandResult, EventKind, ResultStatus
from ledger.keys import time_of
from ledger.limits import AMOUNT_MAX, DEDUP_DUPLICATES_INDEXED_MAX, DEDUP_WAITERS_MAX, EXPIRATIONS_PER_INPUT_MAX
from ledger.principals import Principal, Role
from ledger.shard import Outcome, ShardConfig
from ledger.state import DedupEntry, Table
from tests.principals import TESTER
from tests.unit.ledger.cluster import (
    Auditor,
    Cluster,
    Input,
    changed_nothing,
    check_deterministic,
    check_one_result_each,
    check_outcome_matches_state,
    check_quiescent,
    check_state,
    fresh,
    own_events,
    restart_fresh_ids,
)

E = ErrorCode
ACCEPTED = ResultStatus.ACCEPTED
SHARDS = 3
ACCOUNTS = ["a@0", "b@0", "c@1", "d@1", "e@2", "f@2"]  # opened (and funded) first
LATE = ["g@0", "h@2"]  # opened by the open_account rule, if ever
GHOST = "ghost@1"  # never opened
ANY_ACCOUNT = st.sampled_from([*ACCOUNTS, *ACCOUNTS, *ACCOUNTS, *LATE, GHOST])
HOLD_IDS = st.sampled_from(["h1", "h2", "h3"])
AMOUNTS = st.integers(min_value=1, max_value=700)
SHARD = st.integers(min_value=0, max_value=SHARDS - 1)
WRONG_CURRENCY = st.sampled_from([False, False, False, False, True])

_soak = os.environ.get("LEDGER_SOAK", "")
EXAMPLES = (int(_soak) if _soak.isdigit() and int(_soak) > 1 else 3_000) if _soak else 150
STEPS = 150 if _soak else 50


@dataclasses.dataclass(slots=True)
class ModelAccount:
    currency: str
    status: str = "ACTIVE"
    owner: str = TESTER.principal_id


# Principals besides TESTER (every role): an account may be given to STRANGER (assign_owner),
# and INTRUDER, holding one role at a time, owns nothing and tries what it may not.
STRANGER = "stranger"


# What the intruder tries, and the roles that would allow it (written out here, not taken from
# ledger/authorization.py). The intruder owns no account, so with OWNER it still may not debit.
INTRUSIONS: dict[str, Any] = {
    "Withdraw": lambda account: Withdraw(
        command_id=fresh(), dedup_id=fresh("d"), account_id=account, amount=1, currency="USD"
    ),
    "Transfer": lambda account: Transfer(
        command_id=fresh(), dedup_id=fresh("d"), from_account_id=account, to_account_id="a@0", amount=1, currency="USD"
    ),
    "PlaceHold": lambda account: PlaceHold(
        command_id=fresh(),
        dedup_id=fresh("d"),
        account_id=account,
        hold_id="h1",
        amount=1,
        currency="USD",
        ttl_ms=1_000,
    ),
    "Deposit": lambda account: Deposit(
        command_id=fresh(), dedup_id=fresh("d"), account_id=account, amount=1, currency="USD"
    ),
    "LockAccount": lambda account: LockAccount(command_id=fresh(), dedup_id=fresh("d"), account_id=account),
    "UpdateLimits": lambda account: UpdateLimits(
        command_id=fresh(),
        dedup_id=fresh("d"),
        account_id=account,
        lower_limit=-(2**62),
        upper_limit=AMOUNT_MAX,
        currency="USD",
    ),
    "OpenAccount": lambda account: OpenAccount(
        command_id=fresh(), dedup_id=fresh("d"), account_id=account, currency="USD", owner="intruder"
    ),
    "AssignOwner": lambda account: AssignOwner(
        command_id=fresh(), dedup_id=fresh("d"), account_id=account, owner="intruder"
    ),
    "QueryCommand": lambda account: QueryCommand(command_id=fresh(), account_id=account, target_command_id=fresh()),
}
INTRUSION_ROLES: dict[str, frozenset[Role]] = {
    "Withdraw": frozenset(),
    "Transfer": frozenset(),
    "PlaceHold": frozenset(),
    "Deposit": frozenset({Role.OPERATOR}),
    "LockAccount": frozenset({Role.OPERATOR}),
    "UpdateLimits": frozenset({Role.OPERATOR}),
    "OpenAccount": frozenset({Role.ADMIN}),
    "AssignOwner": frozenset({Role.ADMIN}),
    "QueryCommand": frozenset({Role.OPERATOR, Role.AUDITOR}),
}
INTRUDER_ROLES = st.sampled_from([frozenset({role}) for role in Role] + [frozenset()])


def _other(currency: str) -> str:
    return "JPY" if currency == "USD" else "USD"


class LedgerMachine(RuleBasedStateMachine):
    CONFIG = ShardConfig(batch_timeout_ms=3_000)  # the default window (24 h) never passes here

    def __init__(self) -> None:
        super().__init__()
        restart_fresh_ids()
        self.cluster = Cluster(SHARDS, config=self.CONFIG)
        self.auditor = Auditor()
        self.cluster.observers.append(self._observe)
        self.model: dict[str, ModelAccount] = {}
        self.holds_placed: set[tuple[str, str]] = set()
        self.external: dict[str, int] = defaultdict(int)
        self.originals: list[MutatingCommand] = []  # valid commands, each with its own dedup id
        self.recorded_at: dict[str, int] = {}  # command id of an original -> its shard's clock when decided
        self.replays: list[tuple[str, str]] = []  # (duplicate's command id, original's command id)
        self.credited: list[tuple[str, str]] = []  # (account credited, transfer id) of transfers
        self.reversed: dict[str, list[str]] = defaultdict(list)  # transfer id -> accepted reversals
        self.sent: dict[str, Any] = {}  # command id -> command
        # Velocity rules as set (hour amount, hour count, day amount, day count, freeze), and the
        # outgoing payments (time, amount) seen in events since an account got its rules.
        self.velocity: dict[str, tuple[int, int, int, int, bool]] = {}
        self.outgoing: dict[str, list[tuple[int, int]]] = defaultdict(list)

    def _observe(self, record: Input, outcome: Outcome) -> None:
        check_outcome_matches_state(self.cluster, record, outcome)
        self.auditor.observe_all(outcome.events)
        for event in outcome.events:
            if event.kind in (EventKind.WITHDRAWN, EventKind.TRANSFER_DEBITED) and event.account_id in self.velocity:
                self.outgoing[event.account_id].append((event.occurred_at_ms, -event.amount))
        for result in outcome.results:
            if result.status is not ACCEPTED or result.replayed:
                continue
            if result.command_type == "Transfer":
                self.credited.append((result.positions[1].account_id, result.reference_id or ""))
            elif result.command_type == "ReverseTransfer":
                self.reversed[self.sent[result.command_id].transfer_id].append(result.command_id)

    # -- submission and prediction ------------------------------------------------------------------

    def submit(self, command: Any, expect: ErrorCode | str | None = "?") -> CommandResult | None:
        """Submit; with `expect` (a code, or None for accepted) the result must be
        immediate and as predicted — unless the shard's window is full, which refuses any
        new command (see `refused`)."""
        self.sent[command.command_id] = command
        outcome = self.cluster.submit(command)
        mine = [result for result in outcome.results if result.command_id == command.command_id]
        if mine and self.refused(mine[0]):
            self.check_window_full(command, outcome)
            return mine[0]
        forbidden = bool(mine) and mine[0].code is E.FORBIDDEN  # answered, not remembered
        if forbidden:
            assert not own_events(outcome), "a denied command changed something"
        if not isinstance(command, QueryCommand) and not forbidden:
            self.check_window_had_room(command)
            if validate(command) is None:
                self.originals.append(command)
                self.recorded_at[command.command_id] = self.shard_of(command).clock_ms()
        if expect != "?":
            assert len(mine) == 1, f"no immediate result for {command}"
            assert mine[0].code == expect, f"predicted {expect}, got {mine[0]}"
        return mine[0] if mine else None

    def as_decided(self, account_id: str) -> Account | None:
        """The account as its shard will decide the next input on it: the holds the input's
        time made due released first (the first EXPIRATIONS_PER_INPUT_MAX entries of the
        shard's expiry queue, oldest first; ledger/flows/clock.py)."""
        account = self.cluster.account(account_id)
        if account is None:
            return None
        shard = self.cluster.route(account_id)
        now = max(self.cluster.now, self.cluster.shards[shard].clock_ms())
        store = self.cluster.stores[shard]
        due = [entry for key, entry in store.items(Table.HOLD_EXPIRIES) if time_of(key) <= now]
        released = 0
        for entry in due[:EXPIRATIONS_PER_INPUT_MAX]:
            hold = store.get(Table.HOLDS, entry.key)
            if hold is not None and hold.status is HoldStatus.OPEN and hold.account_id == account_id:
                released += hold.amount
        return dataclasses.replace(account, held=account.held - released)

    @staticmethod
    def refused(result: CommandResult | None) -> bool:
        """Refused because the shard remembers all it may: the model's prediction is void."""
        return result is not None and result.code is E.DEDUP_WINDOW_FULL

    def shard_of(self, command: Any) -> Any:
        return self.cluster.shards[self.cluster.route(command.routing_key)]

    def retained(self, command: Any) -> int:
        """How many inputs the command's shard remembers (what `retained_entries_max` bounds)."""
        return self.cluster.remembered(self.cluster.route(command.routing_key))

    def check_window_full(self, command: Any, outcome: Outcome) -> None:
        assert not isinstance(command, QueryCommand), "a read is never refused for a full window"
        assert self.retained(command) >= self.CONFIG.retained_entries_max, "refused with room in the window"
        assert [result.command_id for result in outcome.results] == [command.command_id]
        assert changed_nothing(outcome), "a refused command changed something"
        entry = self.dedup_entry(command)  # a malformed command's, when this was its correction
        assert entry is None or (entry.malformed and entry.command_id != command.command_id), "refused, remembered"

    def check_window_had_room(self, command: Any) -> None:
        """A new command that was taken found room: it and the shard's other entries are at most the bound."""
        assert self.retained(command) <= self.CONFIG.retained_entries_max

    def status(self, account_id: str) -> str | None:
        model = self.model.get(account_id)
        return None if model is None else model.status

    def not_mine(self, account_id: str) -> ErrorCode | None:
        """TESTER may debit only the accounts it owns; one that does not exist is not its own."""
        model = self.model.get(account_id)
        return E.FORBIDDEN if model is None or model.owner != TESTER.principal_id else None

    def debits_not_mine(self, command: Any) -> bool:
        """A debit (ledger/authorization.py) of this shard's accounts that TESTER does not own."""
        shard = self.cluster.route(command.routing_key)
        return any(
            self.cluster.route(account) == shard and self.not_mine(account) for account in debited_accounts(command)
        )

    def usable(self, account_id: str) -> ErrorCode | None:
        status = self.status(account_id)
        if status is None:
            return E.ACCOUNT_NOT_FOUND
        return {"CLOSED": E.ACCOUNT_CLOSED, "LOCKED": E.ACCOUNT_LOCKED}.get(status)

    def currency_for(self, account_id: str, wrong: bool) -> str:
        model = self.model.get(account_id)
        currency = "USD" if model is None else model.currency
        return _other(currency) if wrong else currency

    # -- account lifecycle ----------------------------------------------------------------------------

    @initialize(
        currencies=st.lists(st.sampled_from(["USD", "USD", "JPY"]), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)),
        lowers=st.lists(st.sampled_from([0, 0, -500]), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)),
        funds=st.lists(st.integers(min_value=0, max_value=3_000), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)),
    )
    def open_and_fund(self, currencies: list[str], lowers: list[int], funds: list[int]) -> None:
        for account, currency, lower, amount in zip(ACCOUNTS, currencies, lowers, funds, strict=True):
            self.open_account(account, currency, lower, AMOUNT_MAX)
            if amount:
                self.deposit(account, amount, False)

    @rule(
        account=st.sampled_from([*ACCOUNTS, *LATE]),
        currency=st.sampled_from(["USD", "USD", "JPY"]),
        lower=st.sampled_from([0, 0, -500]),
        upper=st.sampled_from([AMOUNT_MAX, AMOUNT_MAX, 2_000]),
    )
    def open_account(self, account: str, currency: str, lower: int, upper: int) -> None:
        command = OpenAccount(
            principal=TESTER,
            owner=TESTER.principal_id,
            command_id=fresh(),
            dedup_id=fresh("d"),
            account_id=account,
            currency=currency,
            lower_limit=lower,
            upper_limit=upper,
            metadata={"owner": account},
        )
        exists = account in self.model
        result = self.submit(command, E.ACCOUNT_EXISTS if exists else None)
        if not exists and not self.refused(result):
            self.model[account] = ModelAccount(currency)

    @rule(
        account=ANY_ACCOUNT,
        lower=st.sampled_from([0, -200, -500, -1_000]),
        upper=st.sampled_from([AMOUNT_MAX, 500, 2_000, 10_000]),
        wrong=WRONG_CURRENCY,
    )
    def update_limits(self, account: str, lower: int, upper: int, wrong: bool) -> None:
        command = UpdateLimits(
            principal=TESTER,
            command_id=fresh(),
            dedup_id=fresh("d"),
            account_id=account,
            lower_limit=lower,
            upper_limit=upper,
            currency=self.currency_for(account, wrong),
        )
        expect: ErrorCode | None = None
        status = self.status(account)
        if status is None:
            expect = E.ACCOUNT_NOT_FOUND
        elif status == "CLOSED":
            expect = E.ACCOUNT_CLOSED
        elif wrong:  # limits are priced in the account's currency (a locked account's may change)
            expect = E.CURRENCY_MISMATCH
        else:
            before = self.as_decided(account)
            assert before is not None
            if lower > before.available or upper < before.balance + before.pending_in + before.pending_out:
                expect = E.INVALID_LIMITS
        self.submit(command, expect)

    @rule(account=ANY_ACCOUNT, lock=st.sampled_from([True, False, False]))
    def lock_or_unlock(self, account: str, lock: bool) -> None:
        if lock:
            self.lock(account)
        else:
            self.unlock(account)

    def lock(self, account: str) -> None:
        expect = self.usable(account)
        result = self.submit(
            LockAccount(principal=TESTER, command_id=fresh(), dedup_id=fresh("d"), account_id=account), expect
        )
        if expect is None and not self.refused(result):
            self.model[account].status = "LOCKED"

    def unlock(self, account: str) -> None:
        status = self.status(account)
        expect = {None: E.ACCOUNT_NOT_FOUND, "CLOSED": E.ACCOUNT_CLOSED, "ACTIVE": E.ACCOUNT_NOT_LOCKED}.get(status)
        result = self.submit(
            UnlockAccount(principal=TESTER, command_id=fresh(), dedup_id=fresh("d"), account_id=account), expect
        )
        if expect is None and not self.refused(result):
            self.model[account].status = "ACTIVE"

    @rule(account=st.sampled_from([*ACCOUNTS, *LATE]))
    def close(self, account: str) -> None:
        status = self.status(account)
        expect: ErrorCode | None = {None: E.ACCOUNT_NOT_FOUND, "CLOSED": E.ACCOUNT_CLOSED}.get(status)
        if expect is None:
            before = self.as_decided(account)
            assert before is not None
            if before.balance or before.held or before.pending_in or before.pending_out:
                expect = E.BALANCE_NOT_ZERO
        command = CloseAccount(
            principal=TESTER, command_id=fresh(), dedup_id=fresh("d"), account_id=account, reason="done"
        )
        result = self.submit(command, expect)
        if expect is None and not self.refused(result):
            self.model[account].status = "CLOSED"

    # -- money in and out --------------------------------------------------------------------------------

    @rule(account=ANY_ACCOUNT, amount=AMOUNTS, wrong=WRONG_CURRENCY)
    def deposit(self, account: str, amount: int, wrong: bool, dedup_id: str | None = None) -> None:
        currency = self.currency_for(account, wrong)
        expect = self.usable(account) or (E.CURRENCY_MISMATCH if wrong else None)
        before = self.cluster.account(account)
        if expect is None:
            assert before is not None
            if before.balance + before.pending_in + before.pending_out + amount > before.upper_limit:
                expect = E.LIMIT_EXCEEDED
        command = Deposit(
            principal=TESTER,
            command_id=fresh(),
            dedup_id=dedup_id or fresh("d"),
            account_id=account,
            amount=amount,
            currency=currency,
        )
        result = self.submit(command, expect)
        if expect is None and not self.refused(result):
            self.external[currency] += amount
            after = self.cluster.account(account)
            assert before is not None and after is not None and after.balance == before.balance + amount

    @rule(account=ANY_ACCOUNT, amount=AMOUNTS, wrong=WRONG_CURRENCY)
    def withdraw(self, account: str, amount: int, wrong: bool) -> None:
        currency = self.currency_for(account, wrong)
        expect = self.not_mine(account) or self.usable(account) or (E.CURRENCY_MISMATCH if wrong else None)
        if expect is None:
            before = self.as_decided(account)
            assert before is not None
            if before.available - amount < before.lower_limit:
                expect = E.INSUFFICIENT_FUNDS
        command = Withdraw(
            principal=TESTER,
            command_id=fresh(),
            dedup_id=fresh("d"),
            account_id=account,
            amount=amount,
            currency=currency,
        )
        expect = expect or self.velocity_check(account, amount)
        result = self.submit(command, expect)
        self.freeze_if_tripped(account, expect, result)
        if expect is None and not self.refused(result):
            self.external[currency] -= amount

    def velocity_check(self, account: str, amount: int) -> ErrorCode | None:
        """The model of velocity rules: per-minute windows of the last 60 and 1,440 minutes."""
        rules = self.velocity.get(account)
        if rules is None:
            return None
        now_minute = max(self.cluster.now, self.cluster.shards[self.cluster.route(account)].clock_ms()) // 60_000
        hour_amount, hour_count, day_amount, day_count, _ = rules
        for minutes, amount_max, count_max in ((60, hour_amount, hour_count), (1_440, day_amount, day_count)):
            recent = [paid for at_ms, paid in self.outgoing[account] if at_ms // 60_000 > now_minute - minutes]
            if (amount_max and sum(recent) + amount > amount_max) or (count_max and len(recent) + 1 > count_max):
                return E.VELOCITY_LIMIT_EXCEEDED
        return None

    def freeze_if_tripped(self, account: str, expect: ErrorCode | str | None, result: CommandResult | None) -> None:
        rules = self.velocity.get(account)
        if expect is E.VELOCITY_LIMIT_EXCEEDED and not self.refused(result) and rules is not None and rules[4]:
            self.model[account].status = "LOCKED"

    @rule(
        account=ANY_ACCOUNT,
        amounts=st.lists(st.sampled_from([0, 0, 300, 1_000]), min_size=2, max_size=2),
        counts=st.lists(st.sampled_from([0, 0, 1, 3]), min_size=2, max_size=2),
        freeze=st.booleans(),
    )
    def set_velocity_rules(self, account: str, amounts: list[int], counts: list[int], freeze: bool) -> None:
        status = self.status(account)
        expect = E.ACCOUNT_NOT_FOUND if status is None else (E.ACCOUNT_CLOSED if status == "CLOSED" else None)
        command = SetVelocityRules(
            principal=TESTER,
            command_id=fresh(),
            dedup_id=fresh("d"),
            account_id=account,
            hour_amount_max=amounts[0],
            hour_count_max=counts[0],
            day_amount_max=amounts[1],
            day_count_max=counts[1],
            freeze_on_trip=freeze,
            currency=self.currency_for(account, False),
        )
        result = self.submit(command, expect)
        if expect is not None or self.refused(result):
            return
        if not any((*amounts, *counts)):
            self.velocity.pop(account, None)
            self.outgoing.pop(account, None)
        else:
            self.velocity[account] = (amounts[0], counts[0], amounts[1], counts[1], freeze)

    # -- money between accounts ----------------------------------------------------------------------------

    def debit_check(self, account: str, amount: int, wrong: bool) -> ErrorCode | None:
        expect = self.not_mine(account) or self.usable(account) or (E.CURRENCY_MISMATCH if wrong else None)
        if expect is None:
            before = self.as_decided(account)
            assert before is not None
            if before.available - amount < before.lower_limit:
                expect = E.INSUFFICIENT_FUNDS
        return expect

    @rule(source=ANY_ACCOUNT, destination=ANY_ACCOUNT, amount=AMOUNTS, wrong=WRONG_CURRENCY)
    def transfer(self, source: str, destination: str, amount: int, wrong: bool) -> None:
        currency = self.currency_for(source, wrong)
        command = Transfer(
            principal=TESTER,
            command_id=fresh(),
            dedup_id=fresh("d"),
            from_account_id=source,
            to_account_id=destination,
            amount=amount,
            currency=currency,
            metadata={"memo": "stateful"},
        )
        if source == destination:
            self.submit(command, self.not_mine(source) or E.SAME_ACCOUNT)
            return
        expect = self.debit_check(source, amount, wrong) or self.velocity_check(source, amount)
        result = self.submit(command, expect if expect is not None else "?")
        self.freeze_if_tripped(source, expect, result)

    @rule(
        accounts=st.lists(ANY_ACCOUNT, min_size=2, max_size=5),
        amounts=st.lists(AMOUNTS, min_size=4, max_size=4),
        coordinator=SHARD,
        currency=st.sampled_from(["USD", "USD", "JPY"]),
    )
    def batch(self, accounts: list[str], amounts: list[int], coordinator: int, currency: str) -> None:
        """Postings alternate debits and credits, the last one nets the batch to zero; accounts may
        repeat (each one's postings apply in order against its running balance)."""
        signed = [-amount if index % 2 == 0 else amount for index, amount in enumerate(amounts[: len(accounts) - 1])]
        if sum(signed) == 0:  # the last posting must not be zero: the first (a debit) takes a little more
            signed[0] -= amounts[-1]
        signed.append(-sum(signed))
        legs = [BatchLeg(account_id=a, amount=m, currency=currency) for a, m in zip(accounts, signed, strict=True)]
        command = Batch(
            principal=TESTER, command_id=fresh(), dedup_id=fresh("d"), batch_id=f"{fresh('b')}@{coordinator}", legs=legs
        )
        assert validate(command) is None, (command, validate(command))
        if self.debits_not_mine(command):  # the debits of the coordinator's shard; the others vote FORBIDDEN
            self.submit(command, E.FORBIDDEN)
            return
        self.submit(command, "?")

    # -- holds ------------------------------------------------------------------------------------------------

    @rule(account=ANY_ACCOUNT, hold_id=HOLD_IDS, amount=AMOUNTS, ttl=st.sampled_from([100, 1_000, 5_000, 60_000]))
    def place_hold(self, account: str, hold_id: str, amount: int, ttl: int) -> None:
        command = PlaceHold(
            principal=TESTER,
            command_id=fresh(),
            dedup_id=fresh("d"),
            account_id=account,
            hold_id=hold_id,
            amount=amount,
            currency=self.currency_for(account, False),
            ttl_ms=ttl,
        )
        expect: ErrorCode | None
        if self.not_mine(account):
            expect = E.FORBIDDEN
        elif (account, hold_id) in self.holds_placed:
            expect = E.HOLD_EXISTS
        else:
            expect = self.debit_check(account, amount, False)
        result = self.submit(command, expect)
        if expect is None and not self.refused(result):
            self.holds_placed.add((account, hold_id))
            assert self.cluster.hold(account, hold_id) is not None

    def hold_check(self, account: str, hold_id: str) -> ErrorCode | None:
        if (account, hold_id) not in self.holds_placed:
            return E.HOLD_NOT_FOUND
        hold = self.cluster.hold(account, hold_id)
        assert hold is not None
        if hold.status == "EXPIRED" or (hold.status == "OPEN" and self.cluster.now >= hold.expires_at_ms):
            return E.HOLD_EXPIRED
        return None if hold.status == "OPEN" else E.HOLD_ALREADY_FINALIZED

    def some_hold(self, data: st.DataObject) -> tuple[str, str]:
        """A hold that was placed, if any."""
        if self.holds_placed:
            return data.draw(st.sampled_from(sorted(self.holds_placed)))
        return data.draw(ANY_ACCOUNT), data.draw(HOLD_IDS)

    @rule(account=ANY_ACCOUNT, hold_id=HOLD_IDS, capture=st.booleans())
    def touch_any_hold(self, account: str, hold_id: str, capture: bool) -> None:
        if capture:
            self.capture(account, hold_id, 5, "a@0", False)
        else:
            self.void(account, hold_id)

    @rule(data=st.data())
    def void_hold(self, data: st.DataObject) -> None:
        self.void(*self.some_hold(data))

    def void(self, account: str, hold_id: str) -> None:
        expect = self.not_mine(account) or self.hold_check(account, hold_id)
        self.submit(
            VoidHold(principal=TESTER, command_id=fresh(), dedup_id=fresh("d"), account_id=account, hold_id=hold_id),
            expect,
        )

    @rule(
        data=st.data(),
        amount=st.integers(min_value=1, max_value=400),
        destination=ANY_ACCOUNT,
        wrong=WRONG_CURRENCY,
    )
    def capture_hold(self, data: st.DataObject, amount: int, destination: str, wrong: bool) -> None:
        self.capture(*self.some_hold(data), amount, destination, wrong)

    def capture(self, account: str, hold_id: str, amount: int, destination: str, wrong: bool) -> None:
        """`wrong`: priced in another currency than the hold's (the account's)."""
        command = CaptureHold(
            principal=TESTER,
            command_id=fresh(),
            dedup_id=fresh("d"),
            account_id=account,
            hold_id=hold_id,
            amount=amount,
            to_account_id=destination,
            currency=self.currency_for(account, wrong),
        )
        if self.not_mine(account):
            self.submit(command, E.FORBIDDEN)
            return
        if account == destination:
            self.submit(command, E.SAME_ACCOUNT)
            return
        expect = None if (account, hold_id) in self.holds_placed else E.HOLD_NOT_FOUND
        expect = expect or self.usable(account) or (E.CURRENCY_MISMATCH if wrong else None)
        expect = expect or self.hold_check(account, hold_id)
        if expect is None:
            hold = self.cluster.hold(account, hold_id)
            assert hold is not None
            expect = E.CAPTURE_EXCEEDS_HOLD if amount > hold.amount else None
        self.submit(command, expect if expect is not None else "?")

    # -- reversals and queries ----------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.credited))
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        account, transfer_id = data.draw(st.sampled_from(self.credited))
        if data.draw(st.sampled_from([False, False, False, True])):
            account = data.draw(ANY_ACCOUNT)  # sometimes not the account the transfer credited
        command = ReverseTransfer(
            principal=TESTER,
            command_id=fresh(),
            dedup_id=fresh("d"),
            account_id=account,
            transfer_id=transfer_id,
            reason="refund",
        )
        self.submit(command, E.ACCOUNT_NOT_FOUND if self.status(account) is None else "?")

    @precondition(lambda self: bool(self.originals))
    @rule(data=st.data())
    def query(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(self.originals))
        command = QueryCommand(
            principal=TESTER, command_id=fresh(), account_id=target.routing_key, target_command_id=target.command_id
        )
        if self.dedup_entry(target) is None:
            self.check_forgotten_in_time(target)
            self.submit(command, E.COMMAND_NOT_FOUND)
            return
        result = self.submit(command, None)
        assert result is not None
        if result.message == "found":
            assert result.queried == self.cluster.result(target.command_id)
        else:
            assert result.message == "in flight" and result.queried is None
            store = self.cluster.stores[self.cluster.route(target.routing_key)]
            in_flight = store.get(Table.OUTGOING, target.command_id) is not None or (
                isinstance(target, Batch) and store.get(Table.BATCHES, target.batch_id) is not None
            )
            assert in_flight, f"'in flight' for {target}, which is in flight nowhere"

    @precondition(lambda self: bool(self.replays))
    @rule(data=st.data())
    def query_duplicate(self, data: st.DataObject) -> None:
        """A duplicate's own id is found while its original is remembered (and it was one of
        the first DEDUP_DUPLICATES_INDEXED_MAX); the answer names the original."""
        duplicate_id, original_id = data.draw(st.sampled_from(self.replays))
        original = self.sent[original_id]
        command = QueryCommand(
            principal=TESTER, command_id=fresh(), account_id=original.routing_key, target_command_id=duplicate_id
        )
        entry = self.dedup_entry(original)
        if entry is None or entry.command_id != original_id or duplicate_id not in entry.duplicates:
            if entry is None or entry.command_id != original_id:
                self.check_forgotten_in_time(original)
            else:  # duplicates' ids here are fresh: only the bound leaves one out
                assert len(entry.duplicates) == DEDUP_DUPLICATES_INDEXED_MAX, f"{duplicate_id} not indexed"
            self.submit(command, E.COMMAND_NOT_FOUND)
            return
        result = self.submit(command, None)
        assert result is not None and result.message.endswith(f"a duplicate of command {original_id}")
        if result.queried is not None:
            assert result.queried == self.cluster.result(duplicate_id)
            assert result.queried.original_command_id == original_id and result.queried.replayed
        else:
            assert result.message.startswith("in flight") and self.cluster.results_for(duplicate_id) == []

    @rule(account=st.sampled_from(ACCOUNTS), amount=AMOUNTS)
    def correct_a_malformed_command(self, account: str, amount: int) -> None:
        """A deposit of nothing, refused as INVALID_AMOUNT, then corrected under the same dedup
        id: the correction is a new command."""
        malformed = Deposit(
            principal=TESTER,
            command_id=fresh(),
            dedup_id=fresh("d"),
            account_id=account,
            amount=0,
            currency=self.currency_for(account, False),
        )
        result = self.submit(malformed, E.INVALID_AMOUNT)
        if self.refused(result):
            return
        self.deposit(account, amount, False, dedup_id=malformed.dedup_id)

    @rule(account=ANY_ACCOUNT)
    def query_unknown(self, account: str) -> None:
        command = QueryCommand(
            principal=TESTER, command_id=fresh(), account_id=account, target_command_id=fresh("unknown")
        )
        self.submit(command, E.COMMAND_NOT_FOUND)

    # -- duplicates ----------------------------------------------------------------------------------------------

    def dedup_entry(self, original: MutatingCommand) -> DedupEntry | None:
        store = self.cluster.stores[self.cluster.route(original.routing_key)]
        entry: DedupEntry | None = store.get(Table.DEDUP, f"{original.routing_key}|{original.dedup_id}")
        return entry

    def check_forgotten_in_time(self, original: MutatingCommand) -> None:
        """An original's dedup entry is gone: only once its window has passed."""
        recorded_at = self.recorded_at[original.command_id]
        clock = self.shard_of(original).clock_ms()
        assert clock >= recorded_at + self.CONFIG.retention_ms, (
            f"{original.command_id} forgotten at {clock}, {clock - recorded_at} ms after it was decided"
        )

    @precondition(lambda self: bool(self.originals))
    @rule(data=st.data())
    def duplicate_same_payload(self, data: st.DataObject) -> None:
        original = data.draw(st.sampled_from(self.originals))
        entry = self.dedup_entry(original)
        if entry is None:  # a retry now would be a new command: not a duplicate any more
            self.check_forgotten_in_time(original)
            return
        assert entry.command_id == original.command_id
        duplicate = dataclasses.replace(original, command_id=fresh("dup"))
        outcome = self.cluster.submit(duplicate)
        mine = [result for result in outcome.results if result.command_id == duplicate.command_id]
        if self.debits_not_mine(original):  # given to another owner since: refused before the dedup memory
            assert [(r.code, r.replayed) for r in mine] == [(E.FORBIDDEN, False)]
        elif entry.result is not None:
            assert len(mine) == 1 and mine[0].replayed and mine[0].original_command_id == original.command_id
            self.replays.append((duplicate.command_id, original.command_id))
        elif len(entry.waiters) >= DEDUP_WAITERS_MAX:
            assert len(mine) == 1 and mine[0].code is E.DUPLICATE_BACKLOG and not mine[0].replayed
        else:
            assert mine == [], "a duplicate of an in-flight command is answered when it finishes"
            self.replays.append((duplicate.command_id, original.command_id))
        assert changed_nothing(outcome), "a duplicate changed something"

    @precondition(lambda self: bool(self.originals))
    @rule(data=st.data())
    def duplicate_other_payload(self, data: st.DataObject) -> None:
        original = data.draw(st.sampled_from(self.originals))
        if self.dedup_entry(original) is None:
            self.check_forgotten_in_time(original)
            return
        changed = _perturb(original)
        assert validate(changed) is None
        outcome = self.cluster.submit(changed)
        code = E.FORBIDDEN if self.debits_not_mine(changed) else E.DEDUP_CONFLICT
        assert [(r.command_id, r.code) for r in outcome.results] == [(changed.command_id, code)]
        assert changed_nothing(outcome)

    # -- invalid commands ----------------------------------------------------------------------------------------

    @rule(account=st.sampled_from(ACCOUNTS), kind=st.integers(min_value=0, max_value=6))
    def invalid(self, account: str, kind: int) -> None:
        ids: dict[str, Any] = {"command_id": fresh(), "dedup_id": fresh("d")}
        cases: list[tuple[Any, ErrorCode]] = [
            (Deposit(principal=TESTER, **ids, account_id=account, amount=0, currency="USD"), E.INVALID_AMOUNT),
            (Withdraw(principal=TESTER, **ids, account_id=account, amount=5, currency="XAU"), E.INVALID_CURRENCY),
            (
                UpdateLimits(
                    principal=TESTER, **ids, account_id=account, lower_limit=5, upper_limit=10, currency="USD"
                ),
                E.INVALID_LIMITS,
            ),
            (
                PlaceHold(
                    principal=TESTER, **ids, account_id=account, hold_id="h9", amount=5, currency="USD", ttl_ms=0
                ),
                E.INVALID_EXPIRY,
            ),
            (
                Transfer(
                    principal=TESTER, **ids, from_account_id=account, to_account_id=account, amount=5, currency="USD"
                ),
                E.SAME_ACCOUNT,
            ),
            (
                Batch(
                    principal=TESTER,
                    **ids,
                    batch_id=fresh("b"),
                    legs=[
                        BatchLeg(account_id=account, amount=-5, currency="USD"),
                        BatchLeg(account_id=account, amount=5, currency="JPY"),
                    ],
                ),
                E.DUPLICATE_LEG,
            ),
            (
                Batch(
                    principal=TESTER,
                    **ids,
                    batch_id=fresh("b"),
                    legs=[
                        BatchLeg(account_id=account, amount=-5, currency="USD"),
                        BatchLeg(account_id=GHOST, amount=4, currency="USD"),
                    ],
                ),
                E.UNBALANCED_BATCH,
            ),
        ]
        command, code = cases[kind]
        if self.debits_not_mine(command):  # authorization comes before the body's checks
            code = E.FORBIDDEN
        outcome = self.cluster.submit(command)
        if [r.code for r in outcome.results] == [E.DEDUP_WINDOW_FULL]:  # a full window comes before the body
            self.check_window_full(command, outcome)
            return
        assert [(r.command_id, r.code) for r in outcome.results] == [(command.command_id, code)]
        assert changed_nothing(outcome)

    # -- owners and principals -----------------------------------------------------------------------------

    @rule(account=ANY_ACCOUNT, owner=st.sampled_from([TESTER.principal_id, STRANGER]))
    def assign_owner(self, account: str, owner: str) -> None:
        command = AssignOwner(
            principal=TESTER, command_id=fresh(), dedup_id=fresh("d"), account_id=account, owner=owner
        )
        expect = self.usable(account) if self.status(account) != "LOCKED" else None
        result = self.submit(command, expect)
        if expect is None and not self.refused(result):
            self.model[account].owner = owner
            assigned = self.cluster.account(account)
            assert assigned is not None and assigned.owner == owner

    @rule(account=ANY_ACCOUNT, roles=INTRUDER_ROLES, kind=st.sampled_from(sorted(INTRUSIONS)))
    def intrude(self, account: str, roles: frozenset[Role], kind: str) -> None:
        """A principal that owns nothing sends what none of its roles allows (or debits an
        account not its own): FORBIDDEN, and nothing changes (not even the dedup memory)."""
        command = INTRUSIONS[kind](account)
        if not roles.isdisjoint(INTRUSION_ROLES[kind]):
            return  # allowed: the other rules send these (as TESTER)
        intruder = Principal(principal_id="intruder", roles=roles)
        command = dataclasses.replace(command, principal=intruder)
        shard = self.cluster.route(command.routing_key)
        self.cluster.tick(shard)  # what time makes due is done first: the command's own changes are compared
        before = [self.cluster.stores[shard].items(table) for table in Table if table is not Table.META]
        outcome = self.cluster.submit(command)
        assert [(r.command_id, r.code) for r in outcome.results] == [(command.command_id, E.FORBIDDEN)]
        assert changed_nothing(outcome)
        assert [self.cluster.stores[shard].items(table) for table in Table if table is not Table.META] == before

    # -- time and the bus ------------------------------------------------------------------------------------

    @rule(ms=st.sampled_from([1, 50, 100, 500, 1_000, 3_000, 10_000]))
    def advance_time(self, ms: int) -> None:
        self.cluster.advance(ms)

    @rule(shard=SHARD, ms=st.integers(min_value=0, max_value=2_000))
    def tick_one_shard(self, shard: int, ms: int) -> None:
        self.cluster.now += ms
        self.cluster.tick(shard)

    @rule(shard=SHARD)
    def deliver_one(self, shard: int) -> None:
        self.cluster.deliver(shard)

    @rule(order=st.lists(SHARD, min_size=1, max_size=25))
    def deliver_interleaved(self, order: list[int]) -> None:
        for shard in order:
            self.cluster.deliver(shard)

    @rule()
    def drain(self) -> None:
        self.cluster.drain()
        check_quiescent(self.cluster)
        check_one_result_each(self.cluster, settled=True)

    # -- invariants --------------------------------------------------------------------------------------------

    @invariant()
    def balances_and_bookkeeping(self) -> None:
        check_state(self.cluster, self.external)

    @invariant()
    def at_most_one_result_each(self) -> None:
        check_one_result_each(self.cluster, settled=False)

    @invariant()
    def reversed_at_most_once(self) -> None:
        twice = {transfer: reversals for transfer, reversals in self.reversed.items() if len(reversals) > 1}
        assert not twice, f"transfers reversed more than once: {twice}"

    @invariant()
    def model_statuses(self) -> None:
        for account in self.cluster.accounts():
            assert self.status(account.account_id) == account.status, account
        assert {account.account_id for account in self.cluster.accounts()} == set(self.model)

    @invariant()
    def remembered_for_the_whole_window(self) -> None:
        for command_id, recorded_at in self.recorded_at.items():
            original = self.sent[command_id]
            if self.shard_of(original).clock_ms() < recorded_at + self.CONFIG.retention_ms:
                entry = self.dedup_entry(original)
                assert entry is not None and entry.command_id == command_id, f"{command_id} forgotten early"

    def check_replays(self) -> None:
        answered = {result.command_id: result for result in self.cluster.results}
        for duplicate, original in self.replays:
            if duplicate in answered:
                first = answered.get(original)
                assert first is not None, "a duplicate was answered before the original"
                again = answered[duplicate]
                assert again.replayed and dataclasses.replace(again, command_id=original, replayed=False) == first

    @invariant()
    def replays_equal_originals(self) -> None:
        self.check_replays()

    def teardown(self) -> None:
        if sys.exc_info()[0] is not None:
            return  # a step failed: report that, not a consequence of it
        self.cluster.drain()
        check_state(self.cluster, self.external)
        check_quiescent(self.cluster)
        check_one_result_each(self.cluster, settled=True)
        self.check_replays()
        self.auditor.check_settled()
        self.auditor.check_matches(self.cluster)
        nonzero = {currency: total for currency, total in self.external.items() if total}
        assert {currency: total for currency, total in self.auditor.external.items() if total} == nonzero
        check_deterministic(self.cluster, encode=True)


def _perturb(command: MutatingCommand) -> MutatingCommand:
    """Same dedup id, another (valid) payload."""
    changes: dict[str, Any] = {"command_id": fresh("conflict")}
    match command:
        case OpenAccount() | Batch():
            changes["metadata"] = {"changed": "yes"}
        case Deposit() | Withdraw() | Transfer() | CaptureHold():
            changes["amount"] = command.amount + 1
        case UpdateLimits():
            changes["upper_limit"] = command.upper_limit - 1 if command.upper_limit > 0 else 1
        case LockAccount() | UnlockAccount() | CloseAccount() | ReverseTransfer():
            changes["reason"] = command.reason + "!"
        case SetVelocityRules():
            changes["hour_count_max"] = command.hour_count_max + 1
        case PlaceHold():
            changes["ttl_ms"] = command.ttl_ms + 1
        case VoidHold():
            changes["hold_id"] = command.hold_id + "x"
        case AssignOwner():
            changes["owner"] = command.owner + "2"
    assert len(changes) == 2, command
    changed: MutatingCommand = dataclasses.replace(command, **changes)
    return changed


class WindowedLedgerMachine(LedgerMachine):
    """The same, with a window of 4 s and at most 10 entries per shard: commands are
    refused for a full window, and entries leave as time passes."""

    CONFIG = ShardConfig(batch_timeout_ms=3_000, retention_ms=4_000, retained_entries_max=10)
    FINISHED = frozenset({HoldStatus.CAPTURED, HoldStatus.VOIDED, HoldStatus.EXPIRED})

    def __init__(self) -> None:
        super().__init__()
        self.hold_statuses: dict[tuple[str, str], HoldStatus] = {}

    @invariant()
    def the_window_moves_on(self) -> None:
        """Every shard ticks at the current time, so that no entry past its window is left for
        the next step (an input forgets such entries as it comes, which would make the model's
        predictions ambiguous; tests/unit/ledger/test_time_and_retention.py covers that). Then:
        what is past its window is forgotten unless something on its shard is still in flight,
        and a hold is forgotten only once it is finished."""
        self.cluster.tick()
        busy = {index for index, _, _ in [*self.cluster.rows(Table.OUTGOING), *self.cluster.rows(Table.BATCHES)]}
        for command_id, recorded_at in self.recorded_at.items():
            original = self.sent[command_id]
            shard = self.cluster.route(original.routing_key)
            if shard not in busy and self.cluster.shards[shard].clock_ms() >= recorded_at + self.CONFIG.retention_ms:
                assert self.dedup_entry(original) is None, f"{command_id} outlived its window"
        for placed in sorted(self.holds_placed):
            hold = self.cluster.hold(*placed)
            if hold is None:
                assert self.hold_statuses.get(placed) in self.FINISHED, f"hold {placed} forgotten unfinished"
                self.holds_placed.discard(placed)
                del self.hold_statuses[placed]
            else:
                self.hold_statuses[placed] = hold.status


for machine in (LedgerMachine, WindowedLedgerMachine):
    machine.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
TestLedger = LedgerMachine.TestCase
TestLedgerWithAShortWindow = WindowedLedgerMachine.TestCase
