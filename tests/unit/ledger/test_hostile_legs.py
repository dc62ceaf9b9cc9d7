"""Property: legs no shard sent for the state they meet are harmless.

The stateful model of `test_stateful.py` (every command, three shards, legs delivered in any
interleaving, with a retention window of 4 s) runs on, while the test injects into the legs
topic:
- random legs of every type with random fields: ids drawn from the real ones (accounts,
  flows in flight or finished, batches) and from garbage, amounts, leg indexes and currencies
  from edge values; the fields a forger would have to know to fit a flow in flight — its
  amount, its source sequence, a batch's incarnation, a reservation's sequence — drawn at
  random over 62 bits, as someone who does not know them would (a leg that names them exactly
  is indistinguishable from a real one: see ledger/README.md, "What the checks cannot stop");
- copies of real legs already delivered, replayed at any later point (also after the
  retention window), one at a time or a whole range in its order, sometimes to a partition
  that does not own them.

Delivered like any other input, each must: never raise; if refused, change nothing and
emit no event or result; else change only the accounts it addresses. After every step the
model's predictions and invariants hold: the balance identities, what held / pending_in /
pending_out are made of, conservation of money per currency — counting as external money the
credits of forged CreditLegs for new flow ids, the one kind of forged leg the destination
cannot tell from a real one, which are credited — and at most one result per command. After
the run: everything drained, nothing left in flight or reserved, exactly one result per
command, the auditor's checks, and the replay of every input, injected ones included,
decides identically.

LEDGER_SOAK=1 (or a number of examples) runs it longer, as test_stateful.py.
"""

from __future__ import annotations

import dataclasses
import os
import random
import sys
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from ledger.errors import ErrorCode
from ledger.events import CommandResult, EventKind, Position, ResultStatus
from ledger.legs import (
    BatchAck,
    BatchDecision,
    BatchPrepare,
    BatchVote,
    CreditLeg,
    Flow,
    Leg,
    RefundLeg,
    SettleLeg,
)
from ledger.principals import ANONYMOUS
from ledger.shard import Outcome, ShardConfig
from ledger.state import Table
from tests.principals import TESTER
from tests.unit.ledger.cluster import (
    Input,
    check_deterministic,
    check_outcome_matches_state,
    check_quiescent,
    check_state,
    final_results,
    submitted_commands,
)
from tests.unit.ledger.test_stateful import ACCOUNTS, EXAMPLES, GHOST, LATE, SHARDS, STEPS, WindowedLedgerMachine

FORGED = "forged-"  # the command ids of forged CreditLegs: their results are not the commands'
GARBAGE_IDS = ["", "a|b", "with space", "x" * 65, "é@1"]
CURRENCIES = ["USD", "JPY", "EUR", "XXX", ""]
LEG_INDEXES = [0, 1, 2, 15, 16, -1, 2**31 - 1]
SECRET_BITS = 62
# Whatever a shard may have touched, but for the retention window's tables, which every input moves.
REAL_LEGS = (CreditLeg, SettleLeg, RefundLeg, BatchPrepare, BatchVote, BatchDecision, BatchAck)
STATE_TABLES = (Table.ACCOUNTS, Table.OUTGOING, Table.PREPARED, Table.BATCHES, Table.CREDIT_MARKS)


def addressed(leg: Leg) -> set[str]:
    """The accounts a leg may change, if it fits."""
    if isinstance(leg, CreditLeg):
        return {leg.to_account_id}
    if isinstance(leg, SettleLeg | RefundLeg):
        return {leg.from_account_id}
    if isinstance(leg, BatchPrepare | BatchDecision):
        return {leg.account_id}
    return set()  # votes and acks change only their coordinator's bookkeeping


class HostileLegsMachine(WindowedLedgerMachine):
    """The model with a window of 4 s (every shard ticks after each step), no bound that matters."""

    CONFIG = ShardConfig(batch_timeout_ms=3_000, retention_ms=4_000)

    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[tuple[int, Leg]] = []  # real legs, as delivered, in order
        self.transfer_ids: set[str] = set()
        self.batch_ids: set[str] = set()
        self.minted: dict[str, int] = defaultdict(int)  # credited by forged CreditLegs
        self.forged_serial = 0

    # -- what the shards' own flows do --------------------------------------------------------------------------

    def _observe(self, record: Input, outcome: Outcome) -> None:
        check_outcome_matches_state(self.cluster, record, outcome)
        self.auditor.observe_all(outcome.events)
        for result in outcome.results:
            if result.command_id in self.sent and result.status is ResultStatus.ACCEPTED and not result.replayed:
                if result.command_type == "Transfer":
                    self.credited.append((result.positions[1].account_id, result.reference_id or ""))
                elif result.command_type == "ReverseTransfer":
                    self.reversed[self.sent[result.command_id].transfer_id].append(result.command_id)
        message = record.message
        if isinstance(message, CreditLeg | SettleLeg | RefundLeg):
            self.transfer_ids.add(message.transfer_id)
        if isinstance(message, BatchPrepare | BatchVote | BatchDecision | BatchAck):
            self.batch_ids.add(message.batch_id)
        if not record.tainted and isinstance(message, REAL_LEGS):
            self.delivered.append((record.shard, message))

    # -- injecting ------------------------------------------------------------------------------------------------

    def inject(self, leg: Leg, shard: int) -> None:
        """Deliver a leg no shard sent now; check what it may and may not do."""
        before = {table: self.cluster.rows(table) for table in STATE_TABLES}
        outcome = self.cluster.handle(shard, leg, self.cluster.now, tainted=True)
        if outcome.refused is not None:
            assert outcome.refused.reason
            assert outcome.events == [] and outcome.results == [], f"refused, yet: {outcome}"
            assert {table: self.cluster.rows(table) for table in STATE_TABLES} == before, "refused, yet changed"
            return
        changed = {event.account_id for event in outcome.events}
        assert changed <= addressed(leg), f"{type(leg).__name__} changed {changed - addressed(leg)}: {leg}"
        for result in outcome.results:
            assert isinstance(leg, CreditLeg) and result.command_id == leg.command_id, result
        if isinstance(leg, CreditLeg) and any(event.amount > 0 for event in outcome.events):
            assert leg.command_id.startswith(FORGED), f"a real credit delivered again was credited: {leg}"
            self.minted[leg.currency] += leg.amount

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data(), elsewhere=st.sampled_from([False, False, False, False, True]))
    def replay_a_leg(self, data: st.DataObject, elsewhere: bool) -> None:
        shard, leg = data.draw(st.sampled_from(self.delivered))
        self.inject(leg, data.draw(st.integers(0, SHARDS - 1)) if elsewhere else shard)

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data(), count=st.integers(min_value=1, max_value=4))
    def replay_after_the_window(self, data: st.DataObject, count: int) -> None:
        """Time passes beyond the retention window, then real legs come again."""
        self.cluster.advance(self.CONFIG.retention_ms)
        for _ in range(count):
            shard, leg = data.draw(st.sampled_from(self.delivered))
            self.inject(leg, shard)

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data(), length=st.integers(min_value=1, max_value=12))
    def replay_a_range_in_order(self, data: st.DataObject, length: int) -> None:
        """An operator re-injects a range of the legs topic."""
        start = data.draw(st.integers(0, len(self.delivered) - 1))
        for shard, leg in self.delivered[start : start + length]:
            self.inject(leg, shard)

    @rule(seed=st.integers(min_value=0, max_value=2**32 - 1), kind=st.integers(min_value=0, max_value=6))
    def forge_a_leg(self, seed: int, kind: int) -> None:
        rng = random.Random(seed)  # the fields' values: see "random fields" below
        leg = (
            self.forged_credit,
            self.forged_settle,
            self.forged_refund,
            self.forged_prepare,
            self.forged_vote,
            self.forged_decision,
            self.forged_ack,
        )[kind](rng)
        shard = self.cluster.route(leg.routing_key) if rng.random() < 0.9 else rng.randrange(SHARDS)
        self.inject(leg, shard)

    # -- random fields ---------------------------------------------------------------------------------------------
    #
    # Each forged leg starts plausible — real ids, valid values — and then has up to three of its
    # fields replaced by garbage, so that every check is reached, not only the first.

    def account(self, rng: random.Random) -> str:
        return rng.choice([*ACCOUNTS, *ACCOUNTS, *LATE, GHOST])

    def transfer_id(self, rng: random.Random) -> str:
        return rng.choice([*sorted(self.transfer_ids), "never"])

    def batch_id(self, rng: random.Random) -> str:
        return rng.choice([*sorted(self.batch_ids), "never@1"])

    @staticmethod
    def secret(rng: random.Random) -> int:
        """A value one must know to fit a flow in flight: random over 62 bits, never 0 ("not stated")."""
        return rng.getrandbits(SECRET_BITS) + 1

    def spoil(self, rng: random.Random, leg: Leg, garbage: dict[str, list[Any]]) -> Leg:
        """Replace up to three fields of `leg` by garbage."""
        fields = sorted(set(garbage) & {field.name for field in dataclasses.fields(leg)})
        names = rng.sample(fields, k=min(len(fields), rng.choice([0, 0, 1, 1, 2, 3])))
        spoiled: Leg = dataclasses.replace(leg, **{name: rng.choice(garbage[name]) for name in names})
        return spoiled

    def garbage(self, rng: random.Random) -> dict[str, list[Any]]:
        """Bad values for the fields the leg types share."""
        return {
            "amount": [0, -5, 2**63 - 1, -(2**63), self.secret(rng)],
            "from_account_id": [*GARBAGE_IDS, self.account(rng)],
            "to_account_id": [*GARBAGE_IDS, self.account(rng)],
            "account_id": [*GARBAGE_IDS, self.account(rng)],
            "transfer_id": [*GARBAGE_IDS, self.transfer_id(rng)],
            "batch_id": [*GARBAGE_IDS, self.batch_id(rng)],
            "leg_index": LEG_INDEXES,
            "currency": CURRENCIES,
            "flow": list(Flow),
            "source_sequence": [0, -1, self.secret(rng)],
            "sequence": [0, -1, self.secret(rng)],
            "incarnation": [-1, self.secret(rng)],
            "command_id": [*GARBAGE_IDS, "other"],
            "dedup_id": GARBAGE_IDS,
            "code": [None, *ErrorCode],
            "message": ["", "x" * 5_000],
        }

    def forged_credit(self, rng: random.Random) -> CreditLeg:
        self.forged_serial += 1
        transfer_id = f"{FORGED}{self.forged_serial}"
        flow = rng.choice(list(Flow))
        source = self.account(rng)
        leg = CreditLeg(
            transfer_id=transfer_id,
            flow=flow,
            from_account_id=source,
            to_account_id=self.account(rng),
            amount=rng.randint(1, 500),
            currency=rng.choice(["USD", "USD", "JPY"]),
            command_id=transfer_id,
            dedup_id="d",
            command_type={Flow.TRANSFER: "Transfer", Flow.CAPTURE: "CaptureHold", Flow.REVERSAL: "ReverseTransfer"}[
                flow
            ],
            source_position=Position(account_id=source, sequence=self.secret(rng), balance=0, available=0),
            reversal_of=self.transfer_id(rng) if flow is Flow.REVERSAL else None,
            metadata={},
        )
        garbage = self.garbage(rng)
        garbage = {name: garbage[name] for name in ("amount", "from_account_id", "to_account_id", "currency", "flow")}
        garbage["command_type"] = ["Deposit", "", "Transfer"]
        garbage["reversal_of"] = [None, "never"]
        garbage["metadata"] = [{f"k{i}": "v" for i in range(17)}, {"": "v"}]
        garbage["source_position"] = [
            Position(account_id=self.account(rng), sequence=self.secret(rng), balance=0, available=0),
            Position(account_id=source, sequence=rng.choice([0, -1, 1, 2]), balance=0, available=0),
        ]
        spoiled = self.spoil(rng, leg, garbage)
        assert isinstance(spoiled, CreditLeg)
        return spoiled

    def forged_result(self, rng: random.Random, transfer_id: str) -> CommandResult:
        return CommandResult(
            command_id=rng.choice([transfer_id, "other"]),
            dedup_id="d",
            command_type=rng.choice(["Transfer", "CaptureHold"]),
            status=rng.choice(list(ResultStatus)),
            code=None,
            message="",
            reference_id=transfer_id,
            positions=[],
            replayed=False,
            original_command_id=transfer_id,
            decided_at_ms=0,
            queried=None,
        )

    def flow_fields(self, rng: random.Random) -> dict[str, Any]:
        """The fields of a settle or refund: a real flow's ids, when there is one, and a secret amount."""
        outgoing = [value for _, _, value in self.cluster.rows(Table.OUTGOING)]
        if outgoing and rng.random() < 0.7:
            flow = rng.choice(outgoing)
            ids = {"transfer_id": flow.transfer_id, "flow": flow.flow}
            accounts = {"from_account_id": flow.from_account_id, "to_account_id": flow.to_account_id}
        else:
            ids = {"transfer_id": self.transfer_id(rng), "flow": rng.choice(list(Flow))}
            accounts = {"from_account_id": self.account(rng), "to_account_id": self.account(rng)}
        return {**ids, **accounts, "amount": self.secret(rng), "source_sequence": self.secret(rng)}

    def forged_settle(self, rng: random.Random) -> Leg:
        fields = self.flow_fields(rng)
        leg = SettleLeg(**fields, result=self.forged_result(rng, fields["transfer_id"]))
        return self.spoil(rng, leg, self.garbage(rng))

    def forged_refund(self, rng: random.Random) -> Leg:
        leg = RefundLeg(
            **self.flow_fields(rng),
            code=rng.choice(list(ErrorCode)),
            message="refused",
            decided_at_ms=0,
        )
        return self.spoil(rng, leg, self.garbage(rng))

    def batch_fields(self, rng: random.Random) -> dict[str, Any]:
        """A real batch's id and a leg of it, when there is one; a secret incarnation."""
        batches = [value for _, _, value in self.cluster.rows(Table.BATCHES)]
        if batches and rng.random() < 0.7:
            batch = rng.choice(batches)
            index = rng.randrange(len(batch.legs))
            return {"batch_id": batch.batch_id, "leg_index": index, "account_id": batch.legs[index].account_id}
        return {"batch_id": self.batch_id(rng), "leg_index": rng.randrange(3), "account_id": self.account(rng)}

    def forged_prepare(self, rng: random.Random) -> Leg:
        leg = BatchPrepare(
            **self.batch_fields(rng),
            amount=rng.choice([-1, 1]) * rng.randint(1, 300),
            currency=rng.choice(["USD", "USD", "JPY"]),
            command_id="c",
            dedup_id="d",
            incarnation=self.secret(rng),
            principal=rng.choice([TESTER, ANONYMOUS]),  # a forger who knows the owner, or not
        )
        return self.spoil(rng, leg, self.garbage(rng))

    def forged_vote(self, rng: random.Random) -> Leg:
        accepted = rng.random() < 0.5
        leg = BatchVote(
            **self.batch_fields(rng),
            accepted=accepted,
            code=None if accepted else rng.choice(list(ErrorCode)),
            message="",
            incarnation=self.secret(rng),
            sequence=self.secret(rng) if accepted else 0,
        )
        return self.spoil(rng, leg, self.garbage(rng))

    def forged_decision(self, rng: random.Random) -> Leg:
        commit = rng.random() < 0.5
        leg = BatchDecision(
            **self.batch_fields(rng),
            commit=commit,
            command_id="c",
            dedup_id="d",
            code=None if commit else rng.choice(list(ErrorCode)),
            incarnation=self.secret(rng),
            sequence=self.secret(rng),
        )
        return self.spoil(rng, leg, self.garbage(rng))

    def forged_ack(self, rng: random.Random) -> Leg:
        fields = self.batch_fields(rng)
        position = Position(account_id=fields["account_id"], sequence=1, balance=0, available=0)
        leg = BatchAck(**fields, position=rng.choice([None, position]), incarnation=self.secret(rng))
        return self.spoil(rng, leg, self.garbage(rng))

    # -- invariants, with forged credits counted as money from outside ----------------------------------------------

    def external_and_minted(self) -> dict[str, int]:
        total = defaultdict(int, self.external)
        for currency, amount in self.minted.items():
            total[currency] += amount
        return dict(total)

    @invariant()
    def balances_and_bookkeeping(self) -> None:  # the inherited invariant, with the minted money
        check_state(self.cluster, self.external_and_minted())

    @invariant()
    def at_most_one_result_each(self) -> None:
        self.check_results(settled=False)

    @rule()
    def drain(self) -> None:  # the inherited rule, with the forged credits' results left out
        self.cluster.drain()
        check_quiescent(self.cluster)
        self.check_results(settled=True)

    def check_results(self, *, settled: bool) -> None:
        counts = {command_id: count for command_id, count in final_results(self.cluster).items()}
        forged = {command_id for command_id in counts if command_id.startswith(FORGED)}
        sent = {command.command_id for command in submitted_commands(self.cluster)}
        assert set(counts) - forged <= sent, f"results for commands never sent: {set(counts) - forged - sent}"
        extra = {command_id: count for command_id, count in counts.items() if count > 1}
        assert not extra, f"commands with several final results: {extra}"
        if settled:
            assert sent <= set(counts), f"commands without a final result: {sorted(sent - set(counts))}"

    def teardown(self) -> None:
        if sys.exc_info()[0] is not None:
            return
        self.cluster.drain()
        check_state(self.cluster, self.external_and_minted())
        check_quiescent(self.cluster)
        self.check_results(settled=True)
        self.check_replays()
        auditor = self.auditor
        for correlation_id in [key for key in auditor.flows if key.startswith(FORGED)]:
            del auditor.flows[correlation_id]  # a forged credit has no debit
        for currency, amount in self.minted.items():
            auditor.external[currency] += amount
        auditor.check_settled()
        auditor.check_matches(self.cluster)
        minted = [event for event in self.cluster.events if (event.correlation_id or "").startswith(FORGED)]
        assert all(event.kind in _FORGED_KINDS for event in minted), minted
        check_deterministic(self.cluster, encode=True)


_FORGED_KINDS = {EventKind.TRANSFER_CREDITED, EventKind.CAPTURE_CREDITED, EventKind.REVERSAL_CREDITED}

# A third of the state machine's examples by default: each one replays every input, encoded,
# to check determinism, which costs three times an ordinary example. LEDGER_SOAK runs them all.
HOSTILE_EXAMPLES = EXAMPLES if os.environ.get("LEDGER_SOAK") else max(1, EXAMPLES // 3)

HostileLegsMachine.TestCase.settings = settings(
    max_examples=HOSTILE_EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestHostileLegs = HostileLegsMachine.TestCase


def test_a_replayed_real_credit_is_never_credited() -> None:
    """The check `inject` makes, shown once by hand: a real CreditLeg copied after delivery."""
    machine = HostileLegsMachine()
    machine.open_and_fund(["USD"] * len(ACCOUNTS), [0] * len(ACCOUNTS), [100] * len(ACCOUNTS))
    machine.transfer("a@0", "c@1", 10, False)
    credit = next(queued.leg for queued in machine.cluster.queues[1])
    machine.cluster.drain()
    machine.inject(credit, 1)
    machine.cluster.advance(5_000)  # past the window
    machine.inject(credit, 1)
    assert machine.cluster.balance("c@1") == 110
    machine.teardown()
