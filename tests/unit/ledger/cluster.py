"""An in-process cluster of shards with an in-memory message bus, and the checks the
ledger's tests share.

The bus models the internal legs topic: every leg is appended to the queue of the
shard that owns its routing key and is delivered from there in FIFO order, as a
Kafka partition delivers (a single producer's records to one partition keep their
order). Which shard delivers next is up to the test, so interleavings across shards
are arbitrary. An input a test injects (a forged or replayed leg) can be marked
`tainted`: so is every leg it causes, and the checks of money in flight count only
untainted legs. A leg carries the timestamp of the shard that produced it (Kafka
CreateTime); a shard's clock is the largest timestamp it has seen.

Routing: a key ending in "@<digit>" lives on that shard ("alice@2"); any other key by
crc32. The domain only ever sees `is_local`, so any deterministic function will do.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
import typing
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from typing import Any

from ledger import retention
from ledger.accounts import Account, Hold, HoldStatus, within_limits
from ledger.chain import GENESIS_HASH, event_hash
from ledger.commands import Command
from ledger.errors import ErrorCode
from ledger.events import AccountEvent, CommandResult, EventKind, ResultStatus
from ledger.flows.batches import prepared_postings, reservation
from ledger.keys import META_KEY, prepared_key
from ledger.legs import BatchDecision, CreditLeg, Leg, RefundLeg, SettleLeg, Tick
from ledger.shard import Outcome, Shard, ShardConfig
from ledger.state import InMemoryStore, OutgoingTransfer, PreparedLeg, PreparedStatus, ShardMeta, Table
from tests.principals import TESTER

Message = Command | Leg | Tick
START_MS = 1_000_000


def pinned_route(shards: int) -> Callable[[str], int]:
    def route(key: str) -> int:
        _, separator, suffix = key.rpartition("@")
        if separator and suffix.isdigit():
            return int(suffix) % shards
        return zlib.crc32(key.encode()) % shards

    return route


@dataclasses.dataclass(frozen=True, slots=True)
class Input:
    shard: int
    message: Message
    timestamp_ms: int
    tainted: bool = False  # injected by the test, or caused by an injected input


@dataclasses.dataclass(frozen=True, slots=True)
class Queued:
    leg: Leg
    produced_at_ms: int
    tainted: bool = False


class Cluster:
    def __init__(
        self,
        shards: int = 3,
        *,
        config: ShardConfig | None = None,
        route: Callable[[str], int] | None = None,
        start_ms: int = START_MS,
    ) -> None:
        self.size = shards
        self.config = config or ShardConfig()
        self.route = route or pinned_route(shards)
        self.stores = [InMemoryStore(isolate=True) for _ in range(shards)]
        self.shards = [
            Shard(store=store, config=self.config, is_local=self._is_local(index))
            for index, store in enumerate(self.stores)
        ]
        self.queues: list[deque[Queued]] = [deque() for _ in range(shards)]
        self.now = start_ms
        self.inputs: list[Input] = []
        self.outcomes: list[Outcome] = []
        self.events: list[AccountEvent] = []
        self.results: list[CommandResult] = []
        self.observers: list[Callable[[Input, Outcome], None]] = []

    def _is_local(self, index: int) -> Callable[[str], bool]:
        return lambda key: self.route(key) == index

    # -- inputs ---------------------------------------------------------------------------

    def handle(self, shard: int, message: Message, timestamp_ms: int, *, tainted: bool = False) -> Outcome:
        outcome = self.shards[shard].handle(message, timestamp_ms=timestamp_ms)
        record = Input(shard, message, timestamp_ms, tainted)
        self.inputs.append(record)
        self.outcomes.append(outcome)
        self.events.extend(outcome.events)
        self.results.extend(outcome.results)
        produced_at = self.shards[shard].clock_ms()
        for leg in outcome.legs:
            self.queues[self.route(leg.routing_key)].append(Queued(leg, produced_at, tainted))
        for observer in self.observers:
            observer(record, outcome)
        return outcome

    def submit(self, command: Command) -> Outcome:
        return self.handle(self.route(command.routing_key), command, self.now)

    def tick(self, shard: int | None = None) -> None:
        for index in range(self.size) if shard is None else (shard,):
            self.handle(index, Tick(worker_id=f"worker-{index}"), self.now)

    def advance(self, ms: int, *, tick: bool = True) -> None:
        self.now += ms
        if tick:
            self.tick()

    def deliver(self, shard: int) -> Outcome | None:
        if not self.queues[shard]:
            return None
        queued = self.queues[shard].popleft()
        return self.handle(shard, queued.leg, queued.produced_at_ms, tainted=queued.tainted)

    def deliver_any(self, rng: random.Random) -> Outcome | None:
        busy = [index for index, queue in enumerate(self.queues) if queue]
        return self.deliver(rng.choice(busy)) if busy else None

    def drain(self, rng: random.Random | None = None, *, steps_max: int = 1_000_000) -> None:
        for _ in range(steps_max):
            busy = [index for index, queue in enumerate(self.queues) if queue]
            if not busy:
                return
            self.deliver(rng.choice(busy) if rng is not None else busy[0])
        raise AssertionError(f"legs still in flight after {steps_max} deliveries: the protocol does not converge")

    def run(self, command: Command) -> CommandResult:
        """Submit, deliver everything, and return the command's one final result."""
        self.submit(command)
        self.drain()
        return self.result(command.command_id)

    # -- reads ------------------------------------------------------------------------------

    def in_flight(self) -> list[Leg]:
        """The legs on the bus the shards' own flows sent (not those caused by injected legs)."""
        return [queued.leg for queue in self.queues for queued in queue if not queued.tainted]

    def pending(self) -> int:
        return sum(len(queue) for queue in self.queues)

    def account(self, account_id: str) -> Account | None:
        return self.shards[self.route(account_id)].account(account_id)

    def balance(self, account_id: str) -> int:
        account = self.account(account_id)
        assert account is not None, f"no account {account_id}"
        return account.balance

    def accounts(self) -> list[Account]:
        return [account for store in self.stores for _, account in store.items(Table.ACCOUNTS)]

    def rows(self, table: Table) -> list[tuple[int, str, Any]]:
        return [(index, key, value) for index, store in enumerate(self.stores) for key, value in store.items(table)]

    def remembered(self, shard: int) -> int:
        """How many inputs shard `shard` remembers for the window: those its retention entries
        hold, which its ShardMeta counts too (checked here)."""
        held: int = sum(entry.inputs for index, _, entry in self.rows(Table.RETENTION) if index == shard)
        meta: ShardMeta | None = self.stores[shard].get(Table.META, META_KEY)
        counted = 0 if meta is None else retention.size(meta)
        assert held == counted, f"shard {shard}'s retention entries hold {held} inputs, its meta counts {counted}"
        return held

    def hold(self, account_id: str, hold_id: str) -> Hold | None:
        hold: Hold | None = self.stores[self.route(account_id)].get(Table.HOLDS, f"{account_id}|{hold_id}")
        return hold

    def hold_status(self, account_id: str, hold_id: str) -> str | None:
        hold = self.hold(account_id, hold_id)
        return None if hold is None else hold.status.value

    def results_for(self, command_id: str) -> list[CommandResult]:
        return [result for result in self.results if result.command_id == command_id]

    def result(self, command_id: str) -> CommandResult:
        found = self.results_for(command_id)
        assert len(found) == 1, f"command {command_id} has {len(found)} results: {found}"
        return found[0]


# -- commands with fresh ids ---------------------------------------------------------------------

_serial = itertools.count(1)


def fresh(prefix: str = "c") -> str:
    return f"{prefix}{next(_serial)}"


def restart_fresh_ids() -> None:
    """Number `fresh` ids from 1 again. A hypothesis example must get the same ids each time
    it runs: keys of the ordered tables end with ids (two batches due at the same time time
    out in the order of their ids), so with other ids a replay of the example can take
    another path, which hypothesis reports as flaky data generation."""
    global _serial
    _serial = itertools.count(1)


def make(command_type: type[Any], **fields: Any) -> Any:
    """A command with a fresh command id and, unless given, a fresh dedup id, sent by TESTER
    (an account it opens is TESTER's) unless given."""
    fields.setdefault("command_id", fresh("cmd-"))
    fields.setdefault("principal", TESTER)
    if command_type.__name__ == "OpenAccount":
        fields.setdefault("owner", TESTER.principal_id)
    if command_type.__name__ != "QueryCommand":
        fields.setdefault("dedup_id", fresh("dd-"))
    return command_type(**fields)


# -- invariants over the whole cluster's state ------------------------------------------------------


def _money_in_flight(cluster: Cluster) -> dict[str, int]:
    """Money that has left one balance and not reached another: a credit or a refund on
    the bus, or a committed batch leg whose decision is not applied yet."""
    flying: dict[str, int] = defaultdict(int)
    for leg in cluster.in_flight():
        if isinstance(leg, CreditLeg):
            flying[leg.currency] += leg.amount
        elif isinstance(leg, RefundLeg):
            source = cluster.account(leg.from_account_id)
            assert source is not None
            flying[source.currency] += leg.amount
        elif isinstance(leg, BatchDecision) and leg.commit:
            shard = cluster.route(leg.account_id)
            key = prepared_key(leg.batch_id, leg.account_id, leg.incarnation)
            prepared: PreparedLeg | None = cluster.stores[shard].get(Table.PREPARED, key)
            assert prepared is not None, f"a commit decision for {leg.account_id} without a prepared leg"
            account = cluster.account(leg.account_id)
            assert account is not None
            flying[account.currency] += sum(prepared_postings(prepared))
    return flying


def check_state(cluster: Cluster, external: Mapping[str, int] | None = None) -> None:
    """The balance identities of every account, what `held`, `pending_in` and
    `pending_out` are made of, the protocol's bookkeeping, and (given the external
    deposits minus withdrawals per currency) conservation of money."""
    held: dict[str, int] = defaultdict(int)
    pending_in: dict[str, int] = defaultdict(int)
    pending_out: dict[str, int] = defaultdict(int)
    outgoing_by_hold: dict[str, OutgoingTransfer] = {}
    for _, key, outgoing in cluster.rows(Table.OUTGOING):
        assert key == outgoing.transfer_id
        pending_out[outgoing.from_account_id] += outgoing.amount
        if outgoing.hold_key is not None:
            outgoing_by_hold[outgoing.hold_key] = outgoing
    for shard, key, hold in cluster.rows(Table.HOLDS):
        assert cluster.route(hold.account_id) == shard
        if hold.status is HoldStatus.OPEN:
            held[hold.account_id] += hold.amount
        elif hold.status is HoldStatus.CAPTURING:
            outgoing = outgoing_by_hold.pop(key, None)
            assert outgoing is not None, f"hold {key} is CAPTURING with no capture in flight"
            assert 0 < outgoing.amount <= hold.amount
            held[hold.account_id] += hold.amount - outgoing.amount
    assert not outgoing_by_hold, f"captures in flight for holds that are not CAPTURING: {outgoing_by_hold}"
    for _, _, prepared in cluster.rows(Table.PREPARED):
        reserved = reservation(prepared_postings(prepared))
        assert (prepared.status is PreparedStatus.HELD) == (reserved.held > 0), prepared
        assert prepared.postings == [] or (len(prepared.postings) > 1 and prepared.postings[0] == prepared.amount)
        held[prepared.account_id] += reserved.held
        pending_in[prepared.account_id] += reserved.pending_in
    for shard, key, account in cluster.rows(Table.ACCOUNTS):
        assert key == account.account_id and cluster.route(key) == shard
        assert within_limits(account), f"outside its limits: {account}"
        assert account.available == account.balance - account.held
        assert account.held == held[key], f"{key}: held {account.held}, holds and prepared debits {held[key]}"
        assert account.pending_in == pending_in[key], f"{key}: pending_in {account.pending_in} != {pending_in[key]}"
        assert account.pending_out == pending_out[key], (
            f"{key}: pending_out {account.pending_out} != {pending_out[key]}"
        )
        if account.status == "CLOSED":
            assert account.balance == account.held == account.pending_in == account.pending_out == 0
    # Every flow in flight at its source has exactly one leg on the bus that will end it.
    legs_by_transfer = Counter(
        leg.transfer_id for leg in cluster.in_flight() if isinstance(leg, CreditLeg | RefundLeg | SettleLeg)
    )
    outgoing_ids = {key for _, key, _ in cluster.rows(Table.OUTGOING)}
    assert set(legs_by_transfer) == outgoing_ids, (set(legs_by_transfer), outgoing_ids)
    assert all(count == 1 for count in legs_by_transfer.values()), legs_by_transfer
    if external is not None:
        totals: dict[str, int] = defaultdict(int)
        for account in cluster.accounts():
            totals[account.currency] += account.balance
        for currency, amount in _money_in_flight(cluster).items():
            totals[currency] += amount
        currencies = set(totals) | set(external)
        assert {c: totals[c] for c in currencies} == {c: external.get(c, 0) for c in currencies}, (
            f"money not conserved: balances + in flight {dict(totals)}, deposits - withdrawals {dict(external)}"
        )


def check_quiescent(cluster: Cluster) -> None:
    """Nothing is left in flight once every leg has been delivered."""
    assert cluster.pending() == 0
    for table in (Table.OUTGOING, Table.PREPARED, Table.BATCHES, Table.BATCH_DEADLINES):
        assert not cluster.rows(table), f"{table.name} not empty after draining: {cluster.rows(table)}"
    for account in cluster.accounts():
        assert account.pending_in == 0 and account.pending_out == 0, account
    assert all(hold.status is not HoldStatus.CAPTURING for _, _, hold in cluster.rows(Table.HOLDS))


def own_events(outcome: Outcome) -> list[AccountEvent]:
    """The input's own events: not the holds its time released before it was decided
    (ledger/flows/clock.py), which are the only HOLD_EXPIRED events."""
    return [event for event in outcome.events if event.kind is not EventKind.HOLD_EXPIRED]


def own_legs(outcome: Outcome) -> list[Leg]:
    """The input's own legs: not the aborts of the batches its time timed out before it was
    decided (ledger/flows/clock.py), which are the only decisions that carry BATCH_TIMEOUT."""
    return [leg for leg in outcome.legs if not (isinstance(leg, BatchDecision) and leg.code is ErrorCode.BATCH_TIMEOUT)]


def changed_nothing(outcome: Outcome) -> bool:
    """Whether an outcome wrote no event and no leg of its own (a refusal, a duplicate)."""
    return not own_events(outcome) and not own_legs(outcome)


def check_outcome_matches_state(cluster: Cluster, record: Input, outcome: Outcome) -> None:
    """Each event carries the account's state after it; the last one of a step is the
    account as stored."""
    last: dict[str, AccountEvent] = {}
    for event in outcome.events:
        assert cluster.route(event.account_id) == record.shard, "an event for an account of another shard"
        last[event.account_id] = event
    for account_id, event in last.items():
        account = cluster.shards[record.shard].account(account_id)
        assert account is not None
        assert (
            event.sequence,
            event.currency,
            event.balance,
            event.held,
            event.available,
            event.pending_in,
            event.pending_out,
            event.lower_limit,
            event.upper_limit,
            event.status,
            event.parent_account_id,
        ) == (
            account.sequence,
            account.currency,
            account.balance,
            account.held,
            account.available,
            account.pending_in,
            account.pending_out,
            account.lower_limit,
            account.upper_limit,
            account.status,
            account.parent_account_id,
        ), (event, account)
    for result in outcome.results:
        assert (result.status is ResultStatus.ACCEPTED) == (result.code is None), result
        if not result.replayed:
            assert result.original_command_id == result.command_id, result


# -- determinism -------------------------------------------------------------------------------------


@functools.cache
def codec() -> Any:
    from codec import Codec

    return Codec()


def check_deterministic(cluster: Cluster, *, encode: bool = True) -> None:
    """Replaying the recorded inputs into fresh shards gives equal outcomes, and (with
    `encode`) every output encodes, to the same bytes."""
    replica = Cluster(cluster.size, config=cluster.config, route=cluster.route)
    replayed: list[Outcome] = []
    for index, (record, original) in enumerate(zip(cluster.inputs, cluster.outcomes, strict=True)):
        again = replica.shards[record.shard].handle(record.message, timestamp_ms=record.timestamp_ms)
        assert again == original, f"input {index} ({type(record.message).__name__}) decided differently on replay"
        replayed.append(again)
    for shard in range(cluster.size):
        for table in Table:
            assert replica.stores[shard].items(table) == cluster.stores[shard].items(table), (shard, table)
    if encode:
        encoder = codec()
        for original, again in zip(cluster.outcomes, replayed, strict=True):
            first = [encoder.encode(item) for item in (*original.events, *original.results, *original.legs)]
            second = [encoder.encode(item) for item in (*again.events, *again.results, *again.legs)]
            assert first == second, "the replay encodes to other bytes"
            for data, item in zip(first, (*original.events, *original.results, *original.legs), strict=True):
                assert encoder.decode(data) == item


# -- the auditor: accounts rebuilt from the event stream alone ------------------------------------------

_ZERO_MOVES = {EventKind.OPENED, EventKind.LIMITS_UPDATED, EventKind.LOCKED, EventKind.UNLOCKED, EventKind.CLOSED}
_POSITIVE = {
    EventKind.DEPOSITED,
    EventKind.TRANSFER_CREDITED,
    EventKind.TRANSFER_REFUNDED,
    EventKind.CAPTURE_CREDITED,
    EventKind.CAPTURE_REFUNDED,
    EventKind.REVERSAL_CREDITED,
    EventKind.REVERSAL_REFUNDED,
}
_NEGATIVE = {EventKind.WITHDRAWN, EventKind.TRANSFER_DEBITED, EventKind.HOLD_CAPTURED, EventKind.REVERSAL_DEBITED}
_FLOW_KINDS = {
    kind
    for kind in EventKind
    if kind.name.startswith(("TRANSFER_", "CAPTURE_", "REVERSAL_")) or kind is EventKind.HOLD_CAPTURED
}


class Auditor:
    """Knows nothing but AccountEvents. Rebuilds every account from its events and
    checks the stream: sequences gap-free from 1, each event's state the previous plus
    its changes, balance identities, terminal CLOSED, and per flow and batch that the
    money moved nets to zero."""

    def __init__(self) -> None:
        self.latest: dict[str, AccountEvent] = {}
        self.external: dict[str, int] = defaultdict(int)
        self.flows: dict[str, list[AccountEvent]] = defaultdict(list)
        self.batches: dict[str, list[AccountEvent]] = defaultdict(list)

    def observe(self, event: AccountEvent) -> None:
        previous = self.latest.get(event.account_id)
        # The hash chain: linked to the event before (the genesis value first), over its content.
        assert event.previous_hash == (GENESIS_HASH if previous is None else previous.hash), event
        assert event.hash == event_hash(event), f"an event's hash does not match its content: {event}"
        if previous is None:
            assert event.kind is EventKind.OPENED and event.sequence == 1, f"first event of an account: {event}"
            assert event.balance == event.held == event.pending_in == event.pending_out == 0
        else:
            assert event.sequence == previous.sequence + 1, f"sequence gap: {previous.sequence} -> {event}"
            assert previous.status != "CLOSED", f"an event after CLOSED: {event}"
            assert event.currency == previous.currency
            assert event.balance == previous.balance + event.amount, (previous, event)
            assert event.held == previous.held + event.held_change, (previous, event)
            assert event.occurred_at_ms >= previous.occurred_at_ms, "an account's clock went back"
        assert event.available == event.balance - event.held
        assert event.lower_limit <= event.available
        assert event.balance + event.pending_in + event.pending_out <= event.upper_limit
        assert event.held >= 0 and event.pending_in >= 0 and event.pending_out >= 0
        kind = event.kind
        if kind in _ZERO_MOVES:
            assert event.amount == 0 and event.held_change == 0, event
        elif kind in _POSITIVE:
            assert event.amount > 0, event
        elif kind in _NEGATIVE:
            assert event.amount < 0, event
        elif kind in {EventKind.TRANSFER_SETTLED, EventKind.REVERSAL_SETTLED}:
            assert event.amount == 0 and event.held_change == 0, event
        elif kind is EventKind.CAPTURE_SETTLED:
            assert event.amount == 0 and event.held_change <= 0, event
        elif kind is EventKind.HOLD_PLACED:
            assert event.amount == 0 and event.held_change > 0, event
        elif kind in {EventKind.HOLD_VOIDED, EventKind.HOLD_EXPIRED}:
            assert event.amount == 0 and event.held_change < 0, event
        elif kind is EventKind.BATCH_PREPARED:
            assert event.amount == 0 and event.held_change >= 0, event
        elif kind is EventKind.BATCH_COMMITTED:  # the first of a participant's postings releases what it held
            assert event.amount != 0 and event.held_change <= 0, event
        elif kind is EventKind.BATCH_RELEASED:
            assert event.amount == 0 and event.held_change <= 0, event
        if kind is EventKind.HOLD_CAPTURED:
            assert event.held_change <= event.amount < 0, event
        if kind in {EventKind.TRANSFER_REFUNDED, EventKind.CAPTURE_REFUNDED, EventKind.REVERSAL_REFUNDED}:
            assert event.code is not None, event
        if kind in {EventKind.LOCKED, EventKind.UNLOCKED, EventKind.CLOSED}:
            assert event.status == {"LOCKED": "LOCKED", "UNLOCKED": "ACTIVE", "CLOSED": "CLOSED"}[kind.value]
        if kind in {EventKind.DEPOSITED, EventKind.WITHDRAWN}:
            self.external[event.currency] += event.amount
        if kind in _FLOW_KINDS:
            assert event.correlation_id is not None
            self.flows[event.correlation_id].append(event)
        if kind is EventKind.BATCH_COMMITTED:
            assert event.correlation_id is not None
            self.batches[event.correlation_id].append(event)
        self.latest[event.account_id] = event

    def observe_all(self, events: list[AccountEvent]) -> None:
        for event in events:
            self.observe(event)

    def balances(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for event in self.latest.values():
            totals[event.currency] += event.balance
        return dict(totals)

    def check_settled(self) -> None:
        """Once nothing is in flight: every flow and batch netted to zero, nothing pending,
        and the balances are exactly the external deposits minus withdrawals."""
        for event in self.latest.values():
            assert event.pending_in == 0 and event.pending_out == 0, event
        for correlation_id, events in self.flows.items():
            assert sum(event.amount for event in events) == 0, (correlation_id, events)
            assert 1 <= len({event.account_id for event in events}) <= 2, events
        for batch_id, events in self.batches.items():
            net: dict[str, int] = defaultdict(int)
            for event in events:
                net[event.currency] += event.amount
            assert all(total == 0 for total in net.values()), (batch_id, events)
        balances = self.balances()
        currencies = set(balances) | set(self.external)
        assert {c: balances.get(c, 0) for c in currencies} == {c: self.external.get(c, 0) for c in currencies}

    def check_matches(self, cluster: Cluster) -> None:
        """The rebuilt accounts are the stored ones."""
        stored = {account.account_id: account for account in cluster.accounts()}
        assert set(stored) == set(self.latest)
        for account_id, event in self.latest.items():
            account = stored[account_id]
            assert account.last_hash == event.hash, f"{account_id} keeps another hash than its newest event's"
            assert (event.sequence, event.balance, event.held, event.status, event.lower_limit, event.upper_limit) == (
                account.sequence,
                account.balance,
                account.held,
                account.status,
                account.lower_limit,
                account.upper_limit,
            )


def final_results(cluster: Cluster) -> Counter[str]:
    return Counter(result.command_id for result in cluster.results)


COMMAND_TYPES = tuple(typing.get_args(Command))


def submitted_commands(cluster: Cluster) -> list[Command]:
    return [record.message for record in cluster.inputs if isinstance(record.message, COMMAND_TYPES)]


def check_one_result_each(cluster: Cluster, *, settled: bool) -> None:
    """At most one final result per command, for commands that were sent; exactly one
    once nothing is in flight."""
    counts = final_results(cluster)
    sent = {command.command_id for command in submitted_commands(cluster)}
    assert set(counts) <= sent, f"results for commands never sent: {set(counts) - sent}"
    extra = {command_id: count for command_id, count in counts.items() if count > 1}
    assert not extra, f"commands with several final results: {extra}"
    if settled:
        missing = sent - set(counts)
        assert not missing, f"commands without a final result: {sorted(missing)}"
