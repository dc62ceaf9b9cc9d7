"""The ledger's end-to-end checker: what must hold after any run, read from the topics alone.

Every fault test (kill -9, zombies, injected aborts, broker loss) streams a workload,
does its damage, and hands the workload to `check_ledger`, which reads the results,
events and changelog topics (read_committed) and checks:

* every command has exactly one final result; a duplicate got its original's outcome;
* per account, event sequences are 1, 2, 3, … with no gap and **no number used twice**
  (a shard that decided on stale state reissues sequence numbers: replaying the events
  cannot see that, since both the events and the changelog came from the same stale
  state — counting repeats can);
* every account was within its limits at every sequence, and the events' amounts sum to
  its balance;
* per-currency conservation: the final balances equal deposits minus withdrawals, with
  nothing in flight (pending in/out zero, no outgoing transfer, prepared leg or batch left);
* the events replayed equal the shards' changelog tables;
* no hold open past its expiry, and every account's `held` equals its open holds.

`Report.problems()` lists every violation; a test asserts it is empty, so a failure shows
all of them at once.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Iterable
from typing import Any

from bench.topics import READ_TO_END_TIMEOUT_S, after, changelog_state, read_topic
from codec import Codec
from foundation.settings import Settings
from ledger.accounts import Account, Hold, HoldStatus
from ledger.commands import Command
from ledger.events import AccountEvent, CommandResult, EventKind
from ledger.state import ShardMeta, Table
from tests.support import outcome, read_decoded

RESULTS_WAIT_S_DEFAULT = 180.0
# The tables `_check_changelog` compares (the rest, dedup entries and indexes, are one record a
# command and not checked here): decoding only these keeps a long run's check short.
CHECKED_TABLES = (Table.ACCOUNTS, Table.OUTGOING, Table.PREPARED, Table.BATCHES, Table.META, Table.HOLDS)


@dataclasses.dataclass
class Report:
    commands: int = 0
    results: list[CommandResult] = dataclasses.field(default_factory=list)
    events: list[AccountEvent] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)  # commands without a result
    doubled: list[str] = dataclasses.field(default_factory=list)  # commands with more than one
    replay_mismatches: list[str] = dataclasses.field(default_factory=list)
    sequence_gaps: list[str] = dataclasses.field(default_factory=list)
    reused_sequences: int = 0  # (account, sequence) pairs seen more than once
    accounts_with_reused_sequences: int = 0
    limit_violations: list[str] = dataclasses.field(default_factory=list)
    conservation_error: dict[str, int] = dataclasses.field(default_factory=dict)  # currency -> balances - external
    in_flight: list[str] = dataclasses.field(default_factory=list)
    changelog_mismatches: list[str] = dataclasses.field(default_factory=list)
    hold_problems: list[str] = dataclasses.field(default_factory=list)

    def problems(self) -> list[str]:
        found: list[str] = []
        for name in (
            "missing",
            "doubled",
            "replay_mismatches",
            "sequence_gaps",
            "limit_violations",
            "in_flight",
            "changelog_mismatches",
            "hold_problems",
        ):
            values = getattr(self, name)
            if values:
                found.append(f"{name}: {len(values)}, e.g. {values[:5]}")
        if self.reused_sequences:
            found.append(
                f"reused sequence numbers: {self.reused_sequences} over {self.accounts_with_reused_sequences} accounts"
            )
        if any(self.conservation_error.values()):
            found.append(f"conservation error per currency: {self.conservation_error}")
        return found

    def summary(self) -> str:
        codes = collections.Counter(outcome(result)[1] for result in self.results)
        return (
            f"{self.commands} commands, {len(self.results)} results {dict(codes)}, {len(self.events)} events; "
            f"missing {len(self.missing)}, doubled {len(self.doubled)}, reused sequences {self.reused_sequences}, "
            f"conservation error {sum(abs(v) for v in self.conservation_error.values())}"
        )


def wait_for_results(
    settings: Settings,
    codec: Codec,
    command_ids: set[str],
    *,
    timeout_s: float = RESULTS_WAIT_S_DEFAULT,
    read_timeout_s: float = READ_TO_END_TIMEOUT_S,
) -> list[CommandResult]:
    """The results topic once it holds a result for every id (or the timeout passed). Each
    look reads only what the last one had not: a fault test's topic holds ~100,000 results,
    still arriving while the last faults' turns catch up."""
    deadline = time.monotonic() + timeout_s
    results: list[CommandResult] = []
    seen: set[str] = set()
    start: dict[int, int] = {}
    while True:
        messages = read_topic(
            settings.bootstrap_servers, f"{settings.topic_prefix}.results", timeout_s=read_timeout_s, start=start
        )
        start = after(messages, start)
        new = [codec.decode(message.value()) for message in messages]
        results.extend(new)
        seen.update(result.command_id for result in new)
        if command_ids <= seen or time.monotonic() > deadline:
            return results
        time.sleep(1.0)


def check_ledger(
    settings: Settings,
    codec: Codec,
    workload: Iterable[Command],
    *,
    results_timeout_s: float = RESULTS_WAIT_S_DEFAULT,
    settle_s: float = 0.0,
    read_timeout_s: float = READ_TO_END_TIMEOUT_S,
) -> Report:
    """Wait for every command's result, let ticks run for `settle_s`, then check everything.
    `read_timeout_s`: how long reading one topic to its end may take (the soak's hold millions)."""
    commands = list(workload)
    wanted = {command.command_id for command in commands}
    report = Report(commands=len(commands))
    report.results = wait_for_results(
        settings, codec, wanted, timeout_s=results_timeout_s, read_timeout_s=read_timeout_s
    )
    if settle_s:
        time.sleep(settle_s)
    _check_results(report, wanted)
    # The changelog first, the events after: a state record and its event commit in one
    # transaction, so events read later hold every state the changelog read saw, and perhaps
    # more (ticks go on while we read). Each stored state is compared with the event of its
    # own sequence, never with "the latest event", which may be newer than the state read.
    tables = changelog_state(settings, codec, timeout_s=read_timeout_s, tables=CHECKED_TABLES)
    report.events = read_decoded(
        settings.bootstrap_servers, f"{settings.topic_prefix}.events", codec, timeout_s=read_timeout_s
    )
    history = _check_events(report)
    _check_changelog(report, tables, history)
    return report


def _check_results(report: Report, wanted: set[str]) -> None:
    counts = collections.Counter(result.command_id for result in report.results)
    report.missing = sorted(command_id for command_id in wanted if counts[command_id] == 0)
    report.doubled = sorted(command_id for command_id in wanted if counts[command_id] > 1)
    by_id = {result.command_id: result for result in report.results}
    for result in report.results:
        if result.replayed:
            original = by_id.get(result.original_command_id)
            if original is None or outcome(original)[:2] != outcome(result)[:2]:
                report.replay_mismatches.append(result.command_id)


def _check_events(report: Report) -> dict[str, list[AccountEvent]]:
    """Every account's events in log order; the findings go to `report`."""
    history: dict[str, list[AccountEvent]] = collections.defaultdict(list)
    external: dict[str, int] = collections.defaultdict(int)
    for event in report.events:
        history[event.account_id].append(event)
        if event.kind in (EventKind.DEPOSITED, EventKind.WITHDRAWN):
            external[event.currency] += event.amount
        if not (
            event.lower_limit <= event.balance - event.held
            and event.balance + event.pending_in + event.pending_out <= event.upper_limit
            and event.available == event.balance - event.held
        ):
            report.limit_violations.append(f"{event.account_id}#{event.sequence}")
    for account, events in history.items():
        sequences = [event.sequence for event in events]
        repeats = sum(count - 1 for count in collections.Counter(sequences).values() if count > 1)
        if repeats:
            report.reused_sequences += repeats
            report.accounts_with_reused_sequences += 1
        if sorted(set(sequences)) != list(range(1, len(set(sequences)) + 1)) or sequences != sorted(sequences):
            report.sequence_gaps.append(account)
        if sum(event.amount for event in events) != events[-1].balance:
            report.sequence_gaps.append(f"{account} (amounts do not sum to the balance)")
    final = {account: events[-1] for account, events in history.items()}
    totals: dict[str, int] = collections.defaultdict(int)
    for event in final.values():
        if (event.pending_in, event.pending_out) != (0, 0):
            report.in_flight.append(f"{event.account_id} pending in {event.pending_in} out {event.pending_out}")
        totals[event.currency] += event.balance
    report.conservation_error = {
        currency: totals.get(currency, 0) - external.get(currency, 0) for currency in set(totals) | set(external)
    }
    return history


def _check_changelog(
    report: Report, tables: dict[Table, dict[str, Any]], history: dict[str, list[AccountEvent]]
) -> None:
    stored: dict[str, Account] = tables[Table.ACCOUNTS]
    if set(stored) != set(history):
        report.changelog_mismatches.append(f"accounts differ: {sorted(set(stored) ^ set(history))[:5]}")
    for account_id, account in stored.items():
        same_sequence = [event for event in history.get(account_id, []) if event.sequence == account.sequence]
        if not same_sequence:
            report.changelog_mismatches.append(f"{account_id}: no event for the stored sequence {account.sequence}")
            continue
        event = same_sequence[-1]
        if (
            account.sequence,
            account.balance,
            account.held,
            account.status,
            account.lower_limit,
            account.upper_limit,
        ) != (event.sequence, event.balance, event.held, event.status, event.lower_limit, event.upper_limit):
            report.changelog_mismatches.append(account_id)
    for table in (Table.OUTGOING, Table.PREPARED, Table.BATCHES):
        report.in_flight.extend(f"{table.name} {key}" for key in tables[table])
    clocks = [meta.clock_ms for meta in tables[Table.META].values() if isinstance(meta, ShardMeta)]
    oldest_clock = min(clocks, default=0)
    holds: dict[str, Hold] = tables[Table.HOLDS]
    report.hold_problems.extend(
        f"hold {key} open past its expiry"
        for key, hold in holds.items()
        if hold.status is HoldStatus.OPEN and hold.expires_at_ms <= oldest_clock
    )
    open_held: dict[str, int] = collections.defaultdict(int)
    for hold in holds.values():
        if hold.status is HoldStatus.OPEN:
            open_held[hold.account_id] += hold.amount
    report.hold_problems.extend(
        f"{account_id} held {account.held} but open holds {open_held[account_id]}"
        for account_id, account in stored.items()
        if account.held != open_held[account_id]
    )
