"""Reconciliation: the ClickHouse view against the command side and against a replay of
the events topic, and per-currency conservation.

    1. read the command side's state: every account in the compacted changelog topic
       (read_committed, to its stable end);
    2. take a consistent cut of the events topic (its last stable offsets), after step 1;
    3. replay the events topic up to the cut: per account, the contiguity of sequences, the
       hash chain (ledger/chain.py), the running balance, condensed sums and the newest
       state, and the event at the sequence the command side holds;
    4. bring the view to the cut (the service waits for its sink; without a service the
       sink is run here) and read it *at the cut*, however far the live sink has gone;
    5. compare, and check conservation on the replay and on the view.

The command side is read before the cut, so each of its accounts is compared with the
replayed event at the very sequence it holds: exact even while commands keep coming.
Accounts opened after step 1 are counted as not verified against the command side.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from codec import Codec, DecodeError
from foundation.clients import kafka_config
from foundation.offsets import last_stable_offsets
from foundation.schema_registry import codec_for
from foundation.settings import Settings
from ledger.accounts import Account
from ledger.chain import ChainCheck
from ledger.events import AccountEvent, EventKind
from ledger.state import Table
from sinks import views
from sinks.events import EVENT_COLUMNS, EventDecoder

READ_TIMEOUT_S = 600.0  # reading a topic to its end, at most
READ_BATCH_MESSAGES = 10_000
VIEW_LOOKUP_ACCOUNTS_MAX = 5_000  # accounts per query when reading the view at given sequences
DIFFERENCES_SHOWN_MAX = 200  # rows of the printed table; the report keeps the count

COMPARED_FIELDS = ("currency", "status", "balance", "held", "pending_in", "pending_out", "lower_limit", "upper_limit")
_COLUMN = {name: index for index, name in enumerate(EVENT_COLUMNS)}
_CREDITED = {kind.value for kind in views.CREDITED}
_SETTLED = {kind.value for kind in views.SETTLED}
_FLOW_KINDS = {kind.value for kind in views.DEBITED + views.CREDITED + views.SETTLED}
_BATCH_FINISHED = {kind.value for kind in views.BATCH_FINISHED}
MISSING = "missing"


@dataclasses.dataclass(frozen=True, slots=True)
class Difference:
    subject: str  # an account id, or a currency for conservation
    field: str
    command_side: str
    replay: str
    view: str
    note: str


@dataclasses.dataclass(slots=True)
class Report:
    cut: dict[int, int]
    accounts_command_side: int = 0
    accounts_replayed: int = 0
    accounts_in_view: int = 0
    accounts_not_in_command_snapshot: int = 0  # opened after step 1: compared with the replay only
    events_replayed: int = 0
    events_in_view: int = 0
    totals_replay: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    totals_view: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    differences: list[Difference] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ok"] = self.ok
        data["cut"] = {str(partition): offset for partition, offset in self.cut.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        fields = {field.name for field in dataclasses.fields(cls)}
        values = {name: value for name, value in data.items() if name in fields}
        values["cut"] = {int(partition): int(offset) for partition, offset in data["cut"].items()}
        values["differences"] = [Difference(**difference) for difference in data["differences"]]
        return cls(**values)


# -- step 1: the command side -------------------------------------------------------------------


def command_side_accounts(settings: Settings, codec: Codec) -> dict[str, Account]:
    """Every account the shards hold, from the changelog topic (last value per key wins)."""
    topic = settings.topology().changelog.name
    admin = AdminClient({**kafka_config(settings)})
    prefix = Table.ACCOUNTS.value.encode()
    accounts: dict[str, Account] = {}

    def take(message: Any) -> None:
        key = message.key() or b""
        if not key.startswith(prefix):
            return
        account_id = key[len(prefix) :].decode()
        value = message.value()
        if value is None:
            accounts.pop(account_id, None)
        else:
            accounts[account_id] = codec.decode(value, expected=(Account,))

    read_until(settings, topic, last_stable_offsets(admin, topic, _partitions(admin, topic)), take)
    return accounts


def _partitions(admin: AdminClient, topic: str) -> list[int]:
    metadata = admin.list_topics(topic, timeout=10)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        raise RuntimeError(f"topic {topic} does not exist")
    return sorted(described.partitions)


def read_until(settings: Settings, topic: str, ends: Mapping[int, int], take: Callable[[Any], None]) -> None:
    """Hand every committed message below `ends` to `take`, partition by partition in order."""
    pending = {partition for partition, end in ends.items() if end > 0}
    if not pending:
        return
    consumer = Consumer(
        {
            **kafka_config(settings),
            "group.id": f"{settings.topic_prefix}.reconcile",  # assign() only: never joins, never commits
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 20,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, 0) for partition in sorted(pending)])
        deadline = time.monotonic() + READ_TIMEOUT_S
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to {dict(ends)} within {READ_TIMEOUT_S}s")
            for message in consumer.consume(READ_BATCH_MESSAGES, timeout=0.2):
                error = message.error()
                partition = message.partition()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                if partition not in pending:
                    continue
                offset = message.offset()
                if error is None and offset is not None and offset < ends[partition]:
                    take(message)
            for position in consumer.position([TopicPartition(topic, partition) for partition in pending]):
                if position.offset >= ends[position.partition]:
                    pending.discard(position.partition)
    finally:
        consumer.close()


# -- step 3: the replay -----------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Replayed:
    events: int = 0
    last_sequence: int = 0
    amount_sum: int = 0
    balance_sum: int = 0
    held_change_sum: int = 0
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    at_command_sequence: dict[str, Any] | None = None
    broken: list[str] = dataclasses.field(default_factory=list)  # sequence or running-balance breaks


@dataclasses.dataclass(slots=True)
class _Flow:
    credited: int = 0
    currency: str = ""
    settled: bool = False
    partitions: set[int] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(slots=True)
class _BatchPart:
    committed: int = 0
    # Participants whose last event of the batch is its reservation: not decided there yet. (A
    # participant that appears in several postings finishes with one event per posting.)
    open_accounts: set[str] = dataclasses.field(default_factory=set)


class Replay:
    """The events topic folded per account and per currency, independently of ClickHouse."""

    def __init__(self, command_sequences: Mapping[str, int]) -> None:
        self.command_sequences = command_sequences
        self.accounts: dict[str, _Replayed] = {}
        self.deposits: collections.Counter[str] = collections.Counter()
        self.withdrawals: collections.Counter[str] = collections.Counter()
        self.flows: dict[str, _Flow] = {}
        self.batches: dict[tuple[str, str], _BatchPart] = {}
        self.undecodable = 0
        self.events = 0
        self.chain = ChainCheck()  # every account's hash chain (ledger/chain.py)

    def add(self, row: list[Any]) -> None:
        column = _COLUMN
        account_id, sequence = row[column["account_id"]], row[column["sequence"]]
        kind, amount, currency = row[column["kind"]], row[column["amount"]], row[column["currency"]]
        balance = row[column["balance"]]
        self.events += 1
        replayed = self.accounts.setdefault(account_id, _Replayed())
        if sequence != replayed.last_sequence + 1:
            replayed.broken.append(f"sequence {replayed.last_sequence} -> {sequence}")
        elif balance != replayed.state.get("balance", 0) + amount:
            replayed.broken.append(f"running balance at {sequence}")
        replayed.events += 1
        replayed.last_sequence = max(replayed.last_sequence, sequence)
        replayed.amount_sum += amount
        replayed.balance_sum += balance
        replayed.held_change_sum += row[column["held_change"]]
        replayed.state = {name: row[column[name]] for name in (*COMPARED_FIELDS, "available")}
        if self.command_sequences.get(account_id) == sequence:
            replayed.at_command_sequence = replayed.state
        if kind == EventKind.DEPOSITED:
            self.deposits[currency] += amount
        elif kind == EventKind.WITHDRAWN:
            self.withdrawals[currency] -= amount
        correlation = row[column["correlation_id"]]
        if correlation is None:
            return
        if kind in _FLOW_KINDS:
            flow = self.flows.setdefault(correlation, _Flow(currency=currency))
            flow.partitions.add(row[column["kafka_partition"]])
            if kind in _CREDITED:
                flow.credited += amount
            elif kind in _SETTLED:
                flow.settled = True
        elif kind in ("BATCH_PREPARED", *_BATCH_FINISHED):
            part = self.batches.setdefault((correlation, currency), _BatchPart())
            if kind == EventKind.BATCH_PREPARED:
                part.open_accounts.add(account_id)
            else:
                part.open_accounts.discard(account_id)
                if kind == EventKind.BATCH_COMMITTED:
                    part.committed += amount

    def totals(self) -> list[dict[str, Any]]:
        """The same figures as views.totals, computed here from the replay."""
        sums: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for replayed in self.accounts.values():
            state = replayed.state
            counter = sums[state["currency"]]
            counter["accounts"] += 1
            counter["events"] += replayed.events
            for name in ("balance", "held", "available", "pending_in", "pending_out"):
                counter[name] += state[name]
        for flow in self.flows.values():
            if flow.credited and not flow.settled and len(flow.partitions) > 1:
                sums[flow.currency]["credits_in_flight"] += flow.credited
        for (_, currency), part in self.batches.items():
            if part.open_accounts:
                sums[currency]["batches_in_flight"] += part.committed
        result = []
        for currency in sorted(sums):
            counter = sums[currency]
            deposits, withdrawals = self.deposits[currency], self.withdrawals[currency]
            in_flight = counter["credits_in_flight"] + counter["batches_in_flight"]
            result.append(
                {
                    "currency": currency,
                    **{name: counter[name] for name in ("accounts", "events", "balance", "held", "available")},
                    "pending_in": counter["pending_in"],
                    "pending_out": counter["pending_out"],
                    "deposits": deposits,
                    "withdrawals": withdrawals,
                    "external_net": deposits - withdrawals,
                    "credits_in_flight": counter["credits_in_flight"],
                    "batches_in_flight": counter["batches_in_flight"],
                    "drift": counter["balance"] + counter["pending_out"] - in_flight - (deposits - withdrawals),
                }
            )
        return result


def replay_events(settings: Settings, cut: Mapping[int, int], command_sequences: Mapping[str, int]) -> Replay:
    topic = settings.topology().events.name
    decoder = EventDecoder(codec_for(settings))
    replay = Replay(command_sequences)

    def take(message: Any) -> None:
        value, partition, offset = message.value() or b"", message.partition(), message.offset()
        try:
            replay.add(decoder.row(value, partition, offset))
            replay.chain.add(decoder.codec.decode(value, expected=(AccountEvent,)), partition=partition, offset=offset)
        except DecodeError:
            replay.undecodable += 1  # the sink dead-letters these too: neither side holds them

    read_until(settings, topic, cut, take)
    return replay


# -- step 5: comparing -------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return MISSING if value is None else str(value)


def compare(
    *,
    command_side: Mapping[str, Account],
    replay: Replay,
    view: Mapping[str, views.AccountSummary],
    view_at_command_sequence: Mapping[str, Mapping[str, Any]],
    running_breaks: Iterable[Mapping[str, Any]],
    latest_mismatches: Iterable[Mapping[str, Any]],
    totals_view: list[dict[str, Any]],
) -> list[Difference]:
    """Every disagreement, one row per account and field (pure: unit-tested on its own)."""
    differences: list[Difference] = []

    def add(
        subject: str, field: str, *, command: Any = "-", replayed: Any = "-", seen: Any = "-", note: str = ""
    ) -> None:
        differences.append(Difference(subject, field, _text(command), _text(replayed), _text(seen), note))

    # The command side against the replay and the view, at the sequence the command side holds.
    for account_id, account in sorted(command_side.items()):
        replayed = replay.accounts.get(account_id)
        at_sequence = None if replayed is None else replayed.at_command_sequence
        in_view = view_at_command_sequence.get(account_id)
        if at_sequence is None or in_view is None:
            add(
                account_id,
                f"event {account.sequence}",
                command="present",
                replayed="present" if at_sequence is not None else None,
                seen="present" if in_view is not None else None,
                note="the event carrying the command side's state is missing",
            )
        for field in COMPARED_FIELDS:
            expected = getattr(account, field)
            expected = getattr(expected, "value", expected)
            replayed_value = None if at_sequence is None else at_sequence[field]
            view_value = None if in_view is None else in_view[field]
            if (at_sequence is not None and replayed_value != expected) or (
                in_view is not None and view_value != expected
            ):
                add(
                    account_id,
                    field,
                    command=expected,
                    replayed=replayed_value,
                    seen=view_value,
                    note=f"at sequence {account.sequence}",
                )

    # The replay's own integrity: the topic must hold 1..n for every account.
    for account_id, replayed in sorted(replay.accounts.items()):
        for problem in replayed.broken:
            add(account_id, "events topic", replayed=problem, note="the topic itself is not gap-free")
    for chain_break in replay.chain.breaks:  # and each account's hash chain must hold
        add(
            chain_break.account_id,
            "hash chain",
            replayed=f"sequence {chain_break.sequence} at partition {chain_break.partition} "
            f"offset {chain_break.offset}",
            note=chain_break.reason,
        )

    # The view against the replay, both at the cut.
    for account_id in sorted(set(replay.accounts) | set(view)):
        replayed = replay.accounts.get(account_id)
        summary = view.get(account_id)
        if replayed is None or summary is None:
            add(
                account_id,
                "account",
                replayed="present" if replayed else None,
                seen="present" if summary else None,
                note="in one of them only",
            )
            continue
        pairs = {
            "events": (replayed.events, summary.events),
            "last sequence": (replayed.last_sequence, summary.last_sequence),
            "sum of amounts": (replayed.amount_sum, summary.amount_sum),
            "sum of running balances": (replayed.balance_sum, summary.balance_sum),
            "sum of held changes": (replayed.held_change_sum, summary.held_change_sum),
        }
        for field in views.SUMMARY_STATE:
            pairs[field] = (replayed.state[field], summary.state[field])
        for field, (expected, found) in pairs.items():
            if expected != found:
                add(account_id, field, replayed=expected, seen=found, note="view at the cut")
    for broken in running_breaks:
        add(
            broken["account_id"],
            "running balance",
            seen=f"seq {broken['sequence']} after {broken['previous_sequence']}: "
            f"{broken['balance']} (expected {broken['expected_balance']})",
            note="a corrupted or missing row in the view",
        )
    for mismatch in latest_mismatches:
        add(
            mismatch["account_id"],
            "account_latest",
            seen=f"sequence {mismatch['sequence']}",
            note="differs from events",
        )

    # Conservation per currency, from the replay and from the view.
    by_currency = {row["currency"]: row for row in totals_view}
    for row in replay.totals():
        seen = by_currency.pop(row["currency"], None)
        if row["drift"] or seen is None or seen["drift"]:
            add(
                row["currency"],
                "conservation drift",
                replayed=row["drift"],
                seen=None if seen is None else seen["drift"],
                note="balance + pending_out - in flight - (deposits - withdrawals)",
            )
        elif seen != row:
            for field, value in row.items():
                if seen.get(field) != value:
                    add(row["currency"], f"total {field}", replayed=value, seen=seen.get(field))
    for currency, seen in by_currency.items():
        add(currency, "conservation drift", replayed=None, seen=seen["drift"], note="currency in the view only")
    return differences


def view_at_sequences(client: Any, database: str, wanted: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """The view's state after the given event of each account."""
    found: dict[str, dict[str, Any]] = {}
    items = list(wanted.items())
    for start in range(0, len(items), VIEW_LOOKUP_ACCOUNTS_MAX):
        chunk = items[start : start + VIEW_LOOKUP_ACCOUNTS_MAX]
        rows = client.query(
            f"""
            SELECT account_id, {", ".join(COMPARED_FIELDS)}
            FROM {database}.account_events FINAL
            WHERE (account_id, sequence) IN %(pairs)s
            """,
            parameters={"pairs": chunk},
        ).result_rows
        for row in rows:
            found[row[0]] = dict(zip(COMPARED_FIELDS, row[1:], strict=True))
    return found


# -- the whole run -----------------------------------------------------------------------------------


def reconcile(
    settings: Settings,
    client: Any,
    *,
    database: str | None = None,
    reach: Callable[[Mapping[int, int]], None],
) -> Report:
    """Steps 1-5 of the module doc; `reach(cut)` returns once the view has passed the cut."""
    started = time.monotonic()
    database = database or settings.clickhouse_database
    codec = codec_for(settings)
    command_side = command_side_accounts(settings, codec)
    events_topic = settings.topology().events.name
    admin = AdminClient({**kafka_config(settings)})
    cut = last_stable_offsets(admin, events_topic, _partitions(admin, events_topic))
    command_sequences = {account_id: account.sequence for account_id, account in command_side.items()}
    replay = replay_events(settings, cut, command_sequences)
    reach(cut)
    summaries = views.account_summaries(client, database, cut=cut)
    totals_view = views.totals(client, database, cut=cut)
    differences = compare(
        command_side=command_side,
        replay=replay,
        view=summaries,
        view_at_command_sequence=view_at_sequences(client, database, command_sequences),
        running_breaks=views.running_balance_breaks(client, database, cut=cut),
        latest_mismatches=views.latest_table_mismatches(client, database),
        totals_view=totals_view,
    )
    return Report(
        cut=dict(cut),
        accounts_command_side=len(command_side),
        accounts_replayed=len(replay.accounts),
        accounts_in_view=len(summaries),
        accounts_not_in_command_snapshot=len(set(replay.accounts) - set(command_side)),
        events_replayed=replay.events,
        events_in_view=sum(summary.events for summary in summaries.values()),
        totals_replay=replay.totals(),
        totals_view=totals_view,
        differences=differences,
        seconds=round(time.monotonic() - started, 3),
    )


# -- the readable table ------------------------------------------------------------------------------


def render(report: Report) -> str:
    lines = [
        f"reconciliation at cut {report.cut} ({report.seconds:.1f}s)",
        f"  accounts: command side {report.accounts_command_side}, replay {report.accounts_replayed}, "
        f"view {report.accounts_in_view} ({report.accounts_not_in_command_snapshot} opened after the "
        "command-side snapshot)",
        f"  events:   replay {report.events_replayed}, view {report.events_in_view}",
        "",
        "per currency (view at the cut)",
        _table(
            ["currency", "accounts", "balance", "pending_out", "in flight", "deposits", "withdrawals", "drift"],
            [
                [
                    row["currency"],
                    row["accounts"],
                    row["balance"],
                    row["pending_out"],
                    row["credits_in_flight"] + row["batches_in_flight"],
                    row["deposits"],
                    row["withdrawals"],
                    row["drift"],
                ]
                for row in report.totals_view
            ],
        ),
        "",
    ]
    if report.ok:
        lines.append("no differences: the view, the command side and the events topic agree")
    else:
        shown = report.differences[:DIFFERENCES_SHOWN_MAX]
        lines.append(f"{len(report.differences)} difference(s):")
        lines.append(
            _table(
                ["account / currency", "field", "command side", "events topic", "view", "note"],
                [[d.subject, d.field, d.command_side, d.replay, d.view, d.note] for d in shown],
            )
        )
        if len(report.differences) > len(shown):
            lines.append(f"... and {len(report.differences) - len(shown)} more")
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header, *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[index]) for row in cells) for index in range(len(header))]
    numeric = [bool(rows) and all(_is_number(row[index]) for row in cells[1:]) for index in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if numeric[index] else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    separator = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), separator, *(line(row) for row in cells[1:])])


def _is_number(text: str) -> bool:
    return text.lstrip("-").isdigit()
