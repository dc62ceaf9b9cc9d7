"""Time is the largest message timestamp seen; ticks expire holds, time out batches and
forget what left the retention window, each bounded per tick."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.commands import Batch, Deposit, MutatingCommand
from ledger.errors import ErrorCode, RefusalCode
from ledger.events import CommandResult, EventKind, ResultStatus
from ledger.flows import clock
from ledger.keys import META_KEY
from ledger.legs import Tick
from ledger.limits import (
    EXPIRATIONS_PER_INPUT_MAX,
    EXPIRATIONS_PER_TICK_MAX,
    RETENTION_FORGETS_PER_INPUT_MAX,
    RETENTION_INPUTS_PER_ENTRY_MAX,
)
from ledger.principals import ANONYMOUS
from ledger.shard import ShardConfig
from ledger.state import Table
from tests.unit.ledger.cluster import Cluster, check_quiescent, check_state
from tests.unit.ledger.test_error_codes import (
    accept_all,
    batch,
    capture,
    deposit,
    forged_credit,
    hold,
    lock,
    make_batch_id,
    open_,
    query,
    reverse,
    same_dedup,
    transfer,
    void,
    withdraw,
)

E = ErrorCode


def test_the_clock_never_goes_back() -> None:
    cluster = Cluster(1)
    shard = cluster.shards[0]
    shard.handle(Tick(worker_id="w"), timestamp_ms=5_000)
    shard.handle(Tick(worker_id="w"), timestamp_ms=1_000)
    assert shard.clock_ms() == 5_000
    cluster.now = 2_000  # a command stamped earlier than the clock is decided at the clock's time
    accept_all(cluster, open_("A@0"), deposit("A@0", 10))
    result = cluster.run(deposit("A@0", 1))
    assert result.decided_at_ms == 5_000 and cluster.events[-1].occurred_at_ms == 5_000


def _holds_of_one_each(holds: int) -> Cluster:
    """A@0 with `holds` holds of 1, each expiring 1,000 ms from now."""
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"), deposit("A@0", holds))
    for index in range(holds):
        cluster.submit(hold("A@0", f"h{index}", 1, ttl_ms=1_000))
    return cluster


def test_hold_expiry_is_bounded_per_tick() -> None:
    holds = EXPIRATIONS_PER_TICK_MAX + 250
    cluster = _holds_of_one_each(holds)
    account = cluster.account("A@0")
    assert account is not None and account.held == holds
    cluster.advance(1_000)
    expired = sum(1 for event in cluster.events if event.kind is EventKind.HOLD_EXPIRED)
    assert expired == EXPIRATIONS_PER_TICK_MAX
    cluster.tick()
    account = cluster.account("A@0")
    assert account is not None and account.held == 0
    # In expiry order, oldest first (ties by key).
    expired_ids = [event.correlation_id for event in cluster.events if event.kind is EventKind.HOLD_EXPIRED]
    assert len(expired_ids) == holds and len(set(expired_ids)) == holds
    check_state(cluster, {"USD": holds})


def test_a_hold_past_its_expiry_reserves_nothing_for_the_next_input_even_before_a_tick() -> None:
    """A hold is released at its expiry, before any later input: not at the next tick,
    which may be seconds away (its worker fenced, the broker away)."""
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"), deposit("A@0", 100), hold("A@0", "h", 100, ttl_ms=1_000))
    cluster.now += 999
    assert cluster.run(withdraw("A@0", 1)).code is E.INSUFFICIENT_FUNDS  # still reserved
    cluster.now += 1  # the hold's expiry; no tick since
    assert cluster.run(withdraw("A@0", 100)).status is ResultStatus.ACCEPTED
    assert [event.kind for event in cluster.events[-2:]] == [EventKind.HOLD_EXPIRED, EventKind.WITHDRAWN]
    assert cluster.events[-2].principal == ANONYMOUS  # time alone released it, not the withdrawal's sender
    assert cluster.hold_status("A@0", "h") == "EXPIRED"
    check_state(cluster, {"USD": 0})


@pytest.mark.parametrize("late_ms", [0, 500])
@pytest.mark.parametrize("finish", ["capture", "void"])
def test_a_capture_or_void_past_expiry_before_any_tick_finds_it_expired(finish: str, late_ms: int) -> None:
    """At the expiry instant or later, with no tick since: the command releases the hold
    (time's event, anonymous) and is rejected HOLD_EXPIRED; nothing else changes."""
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"), open_("B@0"), deposit("A@0", 10), hold("A@0", "h", 10, ttl_ms=1_000))
    cluster.advance(1_000 + late_ms, tick=False)
    command = capture("A@0", "h", 5, "B@0") if finish == "capture" else void("A@0", "h")
    events_before = len(cluster.events)
    assert cluster.run(command).code is E.HOLD_EXPIRED
    released = cluster.events[events_before:]
    assert [(event.kind, event.held_change, event.principal) for event in released] == [
        (EventKind.HOLD_EXPIRED, -10, ANONYMOUS)
    ]
    account = cluster.account("A@0")
    assert account is not None and (account.balance, account.held) == (10, 0)
    assert cluster.hold_status("A@0", "h") == "EXPIRED"
    check_state(cluster, {"USD": 10})


def test_an_input_releases_a_bounded_number_of_due_holds_and_ticks_the_rest() -> None:
    holds = EXPIRATIONS_PER_INPUT_MAX + 3
    cluster = _holds_of_one_each(holds)
    cluster.advance(1_000, tick=False)
    cluster.run(query("A@0", "unknown"))
    account = cluster.account("A@0")
    assert account is not None and account.held == 3
    cluster.tick()
    account = cluster.account("A@0")
    assert account is not None and account.held == 0
    check_state(cluster, {"USD": holds})


def test_a_leg_refused_after_time_released_a_hold_is_still_only_refused() -> None:
    """Releasing due holds comes before the input: a leg that does not fit is refused
    (dead-lettered) although the same call emitted the expiry."""
    cluster = Cluster(2)
    accept_all(cluster, open_("A@0"), deposit("A@0", 5), hold("A@0", "h", 5, ttl_ms=1_000))
    cluster.now += 1_000
    outcome = cluster.handle(0, forged_credit(), cluster.now)  # X@1's leg, on A@0's partition
    assert outcome.refused is not None and outcome.refused.code is RefusalCode.MISROUTED_LEG
    assert [event.kind for event in outcome.events] == [EventKind.HOLD_EXPIRED]


def test_dedup_memory_lasts_exactly_the_retention_window() -> None:
    cluster = Cluster(1, config=ShardConfig(retention_ms=10_000))
    accept_all(cluster, open_("A@0"))
    original = deposit("A@0", 5)
    cluster.run(original)
    cluster.advance(9_999)
    assert cluster.run(same_dedup(original)).replayed
    cluster.advance(1)  # recorded_at + retention: forgotten
    again = cluster.run(same_dedup(original))
    assert not again.replayed and again.status is ResultStatus.ACCEPTED
    account = cluster.account("A@0")
    assert account is not None and account.balance == 10  # a retry after the window is a new deposit
    assert cluster.run(same_dedup(original, amount=6)).code is E.DEDUP_CONFLICT  # remembered again


# -- the idempotency window is a duration; its size bound refuses, it never forgets ------------------------------------


@pytest.mark.parametrize("entries_max", [2, 3, 4, 8])
def test_a_retry_within_the_window_is_never_executed_twice(entries_max: int) -> None:
    """Issue 10, defect 7: the size bound used to forget the oldest entries, so a retry
    well within the window was applied again (a double deposit). Now a full window
    refuses new commands, remembers everything until its time, and answers the retry."""
    cluster = Cluster(1, config=ShardConfig(retention_ms=60_000, retained_entries_max=entries_max))
    accept_all(cluster, open_("A@0"))  # remembered too: one entry
    deposits = [deposit("A@0", 1) for _ in range(entries_max + 1)]
    results = [cluster.run(command) for command in deposits]
    retry = cluster.run(same_dedup(deposits[0]))
    assert retry.replayed and retry.original_command_id == deposits[0].command_id, retry
    assert cluster.balance("A@0") == entries_max - 1
    accepted = entries_max - 1  # the open and these fill the window; the next new command is refused
    assert [result.status for result in results[:accepted]] == [ResultStatus.ACCEPTED] * accepted
    for refused in results[accepted:]:
        assert (refused.status, refused.code, refused.replayed) == (ResultStatus.REJECTED, E.DEDUP_WINDOW_FULL, False)
        assert str(entries_max) in refused.message
    assert cluster.remembered(0) == entries_max


def test_a_command_refused_for_a_full_window_is_not_remembered() -> None:
    cluster = Cluster(1, config=ShardConfig(retention_ms=10_000, retained_entries_max=2))
    accept_all(cluster, open_("A@0"), deposit("A@0", 5))
    refused = deposit("A@0", 7)
    outcome = cluster.submit(refused)
    assert [result.code for result in outcome.results] == [E.DEDUP_WINDOW_FULL]
    assert not outcome.events and not outcome.legs
    assert cluster.run(query("A@0", refused.command_id)).code is E.COMMAND_NOT_FOUND  # reads go on
    assert cluster.run(same_dedup(refused)).code is E.DEDUP_WINDOW_FULL  # still full, still not remembered
    cluster.advance(10_000)
    assert not cluster.rows(Table.RETENTION)
    retried = cluster.run(same_dedup(refused))  # the client's retry once the window has room
    assert retried.status is ResultStatus.ACCEPTED and not retried.replayed
    assert cluster.balance("A@0") == 12


def test_entries_leave_exactly_when_their_window_passes() -> None:
    cluster = Cluster(1, config=ShardConfig(retention_ms=10_000, retained_entries_max=3))
    start = cluster.now
    accept_all(cluster, open_("A@0"))
    cluster.advance(4_000)
    first = deposit("A@0", 1)
    accept_all(cluster, first)
    cluster.advance(4_000)
    accept_all(cluster, deposit("A@0", 1))
    assert cluster.run(deposit("A@0", 1)).code is E.DEDUP_WINDOW_FULL
    cluster.advance(1_999)
    assert cluster.now == start + 9_999 and cluster.remembered(0) == 3
    assert cluster.run(deposit("A@0", 1)).code is E.DEDUP_WINDOW_FULL
    cluster.advance(1)  # the open's window has passed, and only the open's
    assert cluster.remembered(0) == 2
    assert cluster.run(same_dedup(first)).replayed
    accept_all(cluster, deposit("A@0", 1))  # room for one
    cluster.advance(3_999)
    assert cluster.run(same_dedup(first)).replayed
    cluster.advance(1)  # the first deposit's window has passed
    again = cluster.run(same_dedup(first))
    assert again.status is ResultStatus.ACCEPTED and not again.replayed  # a retry after the window is new
    assert cluster.balance("A@0") == 4


def test_inputs_of_one_millisecond_share_a_retention_entry_up_to_its_bound() -> None:
    """A bundle's commands carry one timestamp, and a busy partition decides several commands
    a millisecond: they write one retention record, not one each, up to
    RETENTION_INPUTS_PER_ENTRY_MAX inputs; the next millisecond starts a new entry."""
    cluster = Cluster(1, config=ShardConfig(retention_ms=10_000))
    opening = open_("A@0")
    deposits = [deposit("A@0", 1) for _ in range(RETENTION_INPUTS_PER_ENTRY_MAX + 1)]
    accept_all(cluster, opening, *deposits)
    cluster.now += 1
    later = deposit("A@0", 1)
    accept_all(cluster, later)
    entries = [entry for _, _, entry in cluster.rows(Table.RETENTION)]
    assert [(entry.recorded_at_ms, entry.inputs) for entry in entries] == [
        (cluster.now - 1, RETENTION_INPUTS_PER_ENTRY_MAX),
        (cluster.now - 1, 2),
        (cluster.now, 1),
    ]
    kept = [(retained.table, retained.key) for entry in entries for retained in entry.keys]
    decided: list[MutatingCommand] = [opening, *deposits, later]
    expected = [
        pair
        for command in decided
        for pair in ((Table.DEDUP, f"A@0|{command.dedup_id}"), (Table.COMMANDS, command.command_id))
    ]
    assert kept == expected, "each input's keys, in the order they were decided"
    assert cluster.remembered(0) == RETENTION_INPUTS_PER_ENTRY_MAX + 3


def test_the_window_bound_counts_inputs_not_the_entries_they_share() -> None:
    cluster = Cluster(1, config=ShardConfig(retention_ms=10_000, retained_entries_max=3))
    accept_all(cluster, open_("A@0"), deposit("A@0", 1), deposit("A@0", 1))
    assert len(cluster.rows(Table.RETENTION)) == 1 and cluster.remembered(0) == 3
    refused = cluster.run(deposit("A@0", 1))
    assert refused.code is E.DEDUP_WINDOW_FULL and "remembers 3 commands" in refused.message
    cluster.advance(10_000)  # all three leave together, and the count with them
    assert cluster.remembered(0) == 0 and not cluster.rows(Table.DEDUP) and not cluster.rows(Table.COMMANDS)
    accept_all(cluster, deposit("A@0", 1))


def test_a_shared_entry_is_remembered_for_its_millisecond_s_whole_window() -> None:
    """Every key of a shared entry was recorded in its millisecond: all are answered until that
    millisecond's window passes, and none after. A correction decided in the same millisecond
    as its malformed command shares their entry, which then names the dedup key twice."""
    cluster = Cluster(1, config=ShardConfig(retention_ms=10_000))
    accept_all(cluster, open_("A@0"))
    cluster.advance(1)
    first = deposit("A@0", 3)
    malformed = deposit("A@0", 0)
    corrected = same_dedup(malformed, amount=5)
    assert cluster.run(first).status is ResultStatus.ACCEPTED
    assert cluster.run(malformed).code is E.INVALID_AMOUNT
    assert cluster.run(corrected).status is ResultStatus.ACCEPTED
    (entry,) = [entry for _, _, entry in cluster.rows(Table.RETENTION) if entry.recorded_at_ms == cluster.now]
    assert entry.inputs == 3 and [key.key for key in entry.keys].count(f"A@0|{malformed.dedup_id}") == 2
    cluster.advance(9_999)
    assert cluster.run(same_dedup(first)).replayed and cluster.run(same_dedup(corrected)).replayed
    cluster.advance(1)
    assert cluster.remembered(0) == 0
    assert not cluster.run(same_dedup(first)).replayed and not cluster.run(same_dedup(corrected)).replayed
    assert cluster.balance("A@0") == 16


def test_every_input_forgets_a_little_so_forgetting_keeps_up_without_ticks() -> None:
    """Ticks forget at most EXPIRATIONS_PER_TICK_MAX per tick; every other input forgets up
    to RETENTION_FORGETS_PER_INPUT_MAX entries past the window, so at any input rate the
    shard remembers one window's worth, and nothing younger is forgotten."""
    window = 1_000
    cluster = Cluster(1, config=ShardConfig(retention_ms=window, retained_entries_max=10_000))
    accept_all(cluster, open_("A@0"))
    for _ in range(3 * window):  # one command a millisecond and never a tick
        cluster.now += 1
        accept_all(cluster, deposit("A@0", 1))
    recorded = [entry.recorded_at_ms for _, _, entry in cluster.rows(Table.RETENTION)]
    assert len(recorded) == window and min(recorded) == cluster.now - window + 1

    cluster.now += window  # all of them are past the window now; an input forgets only a few
    cluster.run(query("A@0", "no-such-command"))
    assert len(cluster.rows(Table.RETENTION)) == window - RETENTION_FORGETS_PER_INPUT_MAX
    cluster.tick()  # a tick forgets within its own budget
    assert len(cluster.rows(Table.RETENTION)) == 0


def test_forgetting_budgets_count_the_inputs_a_shared_entry_holds() -> None:
    """An input forgets RETENTION_FORGETS_PER_INPUT_MAX inputs' worth, and a tick
    EXPIRATIONS_PER_TICK_MAX: a shared entry counts its inputs, and is forgotten whole."""
    window = 1_000
    cluster = Cluster(1, config=ShardConfig(retention_ms=window, retained_entries_max=10_000))
    accept_all(cluster, open_("A@0"))
    cluster.now += 1
    per_tick = EXPIRATIONS_PER_TICK_MAX // RETENTION_INPUTS_PER_ENTRY_MAX + 1  # entries a tick forgets
    for _ in range(per_tick + 3):  # that many full entries and three more, a millisecond each
        accept_all(cluster, *[deposit("A@0", 1) for _ in range(RETENTION_INPUTS_PER_ENTRY_MAX)])
        cluster.now += 1
    entries = len(cluster.rows(Table.RETENTION))
    cluster.now += window  # all past the window

    cluster.run(query("A@0", "no-such-command"))  # the open's entry (1 input), then one full entry
    assert len(cluster.rows(Table.RETENTION)) == entries - 2
    cluster.run(query("A@0", "no-such-command"))  # one full entry passes the input's budget alone
    assert len(cluster.rows(Table.RETENTION)) == entries - 3
    cluster.tick()
    assert len(cluster.rows(Table.RETENTION)) == entries - 3 - per_tick
    assert cluster.remembered(0) == RETENTION_INPUTS_PER_ENTRY_MAX


_STEP = st.one_of(
    st.tuples(st.just("new"), st.integers(min_value=1, max_value=9)),
    st.tuples(st.just("retry"), st.integers(min_value=0, max_value=60)),
    st.tuples(st.just("wait"), st.sampled_from([0, 1, 999, 1_000, 2_500, 4_999, 5_000])),
)


@given(steps=st.lists(_STEP, max_size=40), entries_max=st.integers(min_value=1, max_value=6))
@settings(max_examples=150, deadline=None)
def test_the_window_against_a_model(steps: list[tuple[str, int]], entries_max: int) -> None:
    """Deposits, retries and time passing, against a model that knows only the rule: a
    command is remembered for `retention_ms` from when it was decided, never less; a new
    one is refused while `retained_entries_max` are remembered; a retry of a remembered
    one is answered with its first result, anything else is new."""
    window = 5_000
    cluster = Cluster(1, config=ShardConfig(retention_ms=window, retained_entries_max=entries_max))
    opening = open_("A@0")
    cluster.run(opening)
    remembered: dict[str, tuple[int, CommandResult]] = {
        opening.dedup_id: (cluster.now, cluster.result(opening.command_id))
    }
    sent: list[Deposit] = []
    balance = 0
    for kind, value in steps:
        if kind == "wait":
            cluster.advance(value)
            remembered = {key: kept for key, kept in remembered.items() if kept[0] + window > cluster.now}
            continue
        command = deposit("A@0", 1 + value % 9) if kind == "new" or not sent else same_dedup(sent[value % len(sent)])
        sent.append(command)
        result = cluster.run(command)
        if command.dedup_id in remembered:
            first = remembered[command.dedup_id][1]
            assert result == dataclasses.replace(first, command_id=command.command_id, replayed=True)
        elif len(remembered) >= entries_max:
            assert (result.code, result.replayed) == (E.DEDUP_WINDOW_FULL, False), result
        else:
            assert result.status is ResultStatus.ACCEPTED and not result.replayed, result
            balance += command.amount
            remembered[command.dedup_id] = (cluster.now, result)
        assert cluster.remembered(0) == len(remembered)
    assert cluster.balance("A@0") == balance


def test_finished_holds_and_transfers_are_forgotten_after_the_window() -> None:
    cluster = Cluster(3, config=ShardConfig(retention_ms=5_000))
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100), hold("A@0", "h", 10), void("A@0", "h"))
    sent = transfer("A@0", "X@1", 10)
    accept_all(cluster, sent)
    assert cluster.hold("A@0", "h") is not None and cluster.rows(Table.TRANSFERS)
    cluster.advance(5_000)
    assert cluster.hold("A@0", "h") is None and not cluster.rows(Table.TRANSFERS)
    assert cluster.run(hold("A@0", "h", 10)).status is ResultStatus.ACCEPTED  # the id is free again
    assert cluster.run(reverse("X@1", sent.command_id)).code is E.TRANSFER_NOT_FOUND


def test_a_reversal_refused_after_its_transfer_left_the_window() -> None:
    """The transfer record is forgotten while its reversal is in flight; the refund must
    still give the money back (and not resurrect the record)."""
    cluster = Cluster(3, config=ShardConfig(retention_ms=5_000))
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100))
    sent = transfer("A@0", "X@1", 10)
    accept_all(cluster, sent, lock("A@0"))
    cluster.now += 4_000
    back = reverse("X@1", sent.command_id)
    cluster.submit(back)  # in flight to the locked A
    cluster.advance(2_000)  # X's shard forgets the transfer record
    assert not cluster.rows(Table.TRANSFERS)
    cluster.drain()
    assert cluster.result(back.command_id).code is E.ACCOUNT_LOCKED
    receiver = cluster.account("X@1")
    assert receiver is not None and (receiver.balance, receiver.pending_out) == (10, 0)
    assert not cluster.rows(Table.TRANSFERS)
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def _batch_cluster() -> Cluster:
    """Three shards, A@0 funded with 100 and X@1 open; batches time out after 1 s."""
    cluster = Cluster(3, config=ShardConfig(batch_timeout_ms=1_000))
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100))
    return cluster


def check_timed_out(cluster: Cluster, command: Batch) -> None:
    """The batch of A@0 and X@1 ended BATCH_TIMEOUT, both reservations released, nothing else changed."""
    assert cluster.result(command.command_id).code is E.BATCH_TIMEOUT
    released = [e for e in cluster.events if e.kind is EventKind.BATCH_RELEASED and e.command_id == command.command_id]
    assert {e.account_id for e in released} == {"A@0", "X@1"} and all(e.code is E.BATCH_TIMEOUT for e in released)
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def test_a_batch_times_out_only_while_preparing() -> None:
    cluster = _batch_cluster()
    decided = batch(("A@0", -10), ("X@1", 10), batch_id=make_batch_id(2))
    cluster.submit(decided)
    cluster.deliver(0)
    cluster.deliver(1)
    cluster.deliver(2)
    cluster.deliver(2)  # both votes in: committed before the deadline
    cluster.advance(5_000)  # the deadline passes with the decision in flight
    cluster.drain()
    assert cluster.result(decided.command_id).status is ResultStatus.ACCEPTED
    late = batch(("A@0", -10), ("X@1", 10), batch_id=make_batch_id(2))
    cluster.submit(late)
    cluster.deliver(0)  # A prepares; X never hears of it in time
    cluster.advance(1_000)
    cluster.drain()
    check_timed_out(cluster, late)


def test_a_vote_after_the_deadline_finds_the_batch_timed_out_even_before_a_tick() -> None:
    """An input takes the coordinator's clock to a batch's deadline: the batch is aborted
    (BATCH_TIMEOUT) then, as a tick would have, however far away the next tick is, and a
    vote that arrives later finds it aborted. It used to commit: its outcome hung on whether
    a tick came between the deadline and the last vote."""
    cluster = _batch_cluster()
    late = batch(("A@0", -10), ("X@1", 10), batch_id=make_batch_id(2))
    cluster.submit(late)
    cluster.deliver(0)  # both participants prepare and vote yes in time
    cluster.deliver(1)
    cluster.advance(1_000, tick=False)  # the deadline; no tick
    assert cluster.submit(open_("B@2")).results[0].status is ResultStatus.ACCEPTED  # on the coordinator's shard
    cluster.drain()  # the votes, stamped before the deadline, arrive after it
    check_timed_out(cluster, late)


def test_an_input_times_out_a_bounded_number_of_due_batches_and_ticks_the_rest() -> None:
    cluster = _batch_cluster()
    batches = [batch(("A@0", -1), ("X@1", 1), batch_id=make_batch_id(2)) for _ in range(EXPIRATIONS_PER_INPUT_MAX + 3)]
    for command in batches:
        cluster.submit(command)  # prepares wait, undelivered, in shard 0's and 1's queues
    cluster.advance(1_000, tick=False)
    cluster.submit(open_("B@2"))  # any input on the coordinator's shard; nothing delivered yet
    decided = [row for row in cluster.rows(Table.BATCHES) if row[2].phase.value != "PREPARING"]
    assert len(decided) == EXPIRATIONS_PER_INPUT_MAX
    cluster.tick()
    cluster.drain()
    assert [cluster.result(command.command_id).code for command in batches] == [E.BATCH_TIMEOUT] * len(batches)
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def test_a_duplicates_id_is_forgotten_with_the_command_it_duplicated() -> None:
    cluster = Cluster(1, config=ShardConfig(retention_ms=10_000))
    accept_all(cluster, open_("A@0"))
    original = deposit("A@0", 5)
    cluster.run(original)
    cluster.advance(6_000)
    duplicate = same_dedup(original)
    assert cluster.run(duplicate).replayed
    assert cluster.run(query("A@0", duplicate.command_id)).queried is not None
    cluster.advance(4_000)  # the original's window has passed: its duplicate's id goes with it
    assert cluster.run(query("A@0", duplicate.command_id)).code is E.COMMAND_NOT_FOUND
    assert cluster.stores[0].get(Table.COMMANDS, duplicate.command_id) is None
    reused = deposit("A@0", 1, command_id=duplicate.command_id)
    (answer,) = cluster.submit(reused).results
    assert answer.status is ResultStatus.ACCEPTED and not answer.replayed  # the id is free again


def test_a_correction_is_remembered_for_its_own_whole_window() -> None:
    """The malformed command's retention entry leaves first; it must not take the correction's
    dedup entry with it."""
    cluster = Cluster(1, config=ShardConfig(retention_ms=10_000))
    accept_all(cluster, open_("A@0"))
    malformed = deposit("A@0", 0)
    assert cluster.run(malformed).code is E.INVALID_AMOUNT
    cluster.advance(6_000)
    corrected = same_dedup(malformed, amount=5)
    cluster.submit(corrected)
    cluster.advance(4_000)  # the malformed command's window has passed, not the correction's
    assert cluster.run(same_dedup(corrected)).replayed
    assert cluster.run(query("A@0", corrected.command_id)).queried is not None
    cluster.advance(6_000)  # now the correction's has too
    assert not cluster.run(same_dedup(corrected)).replayed  # a new deposit
    assert cluster.balance("A@0") == 10
    assert len(cluster.rows(Table.RETENTION)) == 1 and len(cluster.rows(Table.DEDUP)) == 1


def test_a_correction_in_flight_does_not_hold_up_the_window() -> None:
    cluster = Cluster(3, config=ShardConfig(retention_ms=10_000))
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100))
    malformed = transfer("A@0", "X@1", 0)
    assert cluster.run(malformed).code is E.INVALID_AMOUNT
    cluster.advance(6_000)
    corrected = same_dedup(malformed, amount=5)
    cluster.submit(corrected)  # in flight
    cluster.advance(4_000)
    retained = [entry.recorded_at_ms for shard, _, entry in cluster.rows(Table.RETENTION) if shard == 0]
    assert retained == [cluster.now - 4_000], "the malformed command's entry left on time, the correction's stays"
    cluster.drain()
    assert cluster.result(corrected.command_id).status is ResultStatus.ACCEPTED


# -- which partitions a worker ticks --------------------------------------------------------------
# A worker writes a tick only to a partition on which something waits for time (`Shard.wants_tick`,
# `clock.due_ms`): skipping the others must change nothing a tick would have.

_WAIT_STEP = st.one_of(
    st.tuples(st.just("hold"), st.sampled_from([1, 500, 1_000, 3_000])),  # a hold's ttl
    st.tuples(st.just("deposit"), st.integers(min_value=1, max_value=9)),
    st.tuples(st.just("batch"), st.integers(min_value=0, max_value=2)),  # how many legs are delivered
    st.tuples(st.just("wait"), st.sampled_from([0, 1, 499, 500, 999, 1_000, 2_000, 5_000])),
)


def _state(cluster: Cluster, shard: int) -> dict[Table, list[tuple[str, object]]]:
    """Everything a shard holds but its meta (the clock, which every input moves)."""
    store = cluster.stores[shard]
    return {table: store.items(table) for table in Table if table is not Table.META}


@given(steps=st.lists(_WAIT_STEP, max_size=30))
@settings(max_examples=150, deadline=None)
def test_a_tick_before_the_due_time_changes_nothing_but_the_clock(steps: list[tuple[str, int]]) -> None:
    """Holds, batches left half-prepared, deposits and time passing on three shards whose
    retention window is short: wherever a shard says it wants no tick, a tick changes nothing
    but its clock (no event, result, leg or audit record, and no record but its meta); and a
    shard wants one as soon as a hold's expiry, a batch's deadline or a retention entry's end
    is due."""
    config = ShardConfig(retention_ms=2_000, batch_timeout_ms=1_000)
    cluster = Cluster(3, config=config)
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 1_000))
    for number, (kind, value) in enumerate(steps):
        if kind == "hold":
            cluster.run(hold("A@0", f"h{number}", 1, ttl_ms=value))
        elif kind == "deposit":
            cluster.run(deposit("A@0", value))
        elif kind == "batch":
            cluster.submit(batch(("A@0", -1), ("X@1", 1), batch_id=make_batch_id(2)))
            for shard in (0, 1)[:value]:
                cluster.deliver(shard)  # the rest stays in flight: the coordinator waits for votes
        else:
            cluster.now += value
        for shard in range(cluster.size):
            due = clock.due_ms(
                cluster.stores[shard], cluster.stores[shard].get(Table.META, META_KEY), retention_ms=config.retention_ms
            )
            wanted = cluster.shards[shard].wants_tick(cluster.now)
            assert wanted == (due is not None and due <= max(cluster.now, cluster.shards[shard].clock_ms()))
            if wanted:
                continue
            before = _state(cluster, shard)
            outcome = cluster.handle(shard, Tick(worker_id="w"), cluster.now)
            assert (outcome.events, outcome.results, outcome.legs, outcome.audit) == ([], [], [], [])
            assert _state(cluster, shard) == before


def test_a_shard_wants_a_tick_once_each_kind_of_wait_is_due() -> None:
    """A hold's expiry, a batch's deadline, the end of the retention window: at that time
    and not a millisecond before, and a tick then acts on it."""
    config = ShardConfig(retention_ms=10_000, batch_timeout_ms=3_000)
    cluster = Cluster(3, config=config)
    assert not any(shard.wants_tick(cluster.now + 10**9) for shard in cluster.shards)  # nothing waits yet
    start = cluster.now
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 10), hold("A@0", "h", 1, ttl_ms=1_000))
    cluster.submit(batch(("A@0", -1), ("X@1", 1), batch_id=make_batch_id(2)))  # no leg delivered
    coordinator, holder = cluster.shards[2], cluster.shards[0]
    assert not holder.wants_tick(start + 999) and holder.wants_tick(start + 1_000)  # the hold's expiry
    assert not coordinator.wants_tick(start + 2_999) and coordinator.wants_tick(start + 3_000)  # the deadline
    cluster.advance(1_000)
    assert cluster.hold_status("A@0", "h") == "EXPIRED"
    cluster.deliver(0)  # the participants hear of the batch late: it has timed out by then
    cluster.deliver(1)
    cluster.advance(2_000)
    cluster.drain()
    assert not cluster.shards[1].wants_tick(start + 9_999) and cluster.shards[1].wants_tick(start + 10_000)  # X's open
    remembered = cluster.remembered(1)
    cluster.now = start + 10_000
    cluster.tick(1)
    assert cluster.remembered(1) < remembered
