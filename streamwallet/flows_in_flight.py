"""`streamwallet flows in-flight`: the flows across partitions that have not finished, as the
shards' committed state holds them.

It reads the changelog topic (every partition, or `--partition N`) up to its stable end, so it
shows the same thing whether a worker runs or not, and lists:

  transfer      an OutgoingTransfer on the source's partition: debited there (pending_out),
                waiting for the destination partition to credit it (a transfer, capture or
                reversal); WAITING ON is the destination's partition (once it has credited
                or refused, the source's own settle or refund leg is on its way back)
  batch         a BatchState on the coordinator (the batch id's partition): its phase, votes
                and acknowledgements so far and its deadline; WAITING ON is the coordinator
                (a COMMITTING or ABORTING batch is decided: it awaits its legs' acks)
  prepared-leg  a PreparedLeg on a participant's partition: reserved for a batch whose
                decision has not arrived; WAITING ON is the coordinator's partition

A flow that stays listed while the partition it waits on is owned and decides is stuck
(docs/runbooks/flow-stuck-in-flight.md). The list is the shards' committed state at the
moment of reading, and a healthy ledger finishes flows in milliseconds: compare two runs.

Exit codes: 0 nothing in flight, 1 something in flight (listed), 2 Kafka or its topics cannot
be reached. Amounts in integer minor units and in the currency where the record names it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from codec import Codec
from foundation.offsets import last_stable_offsets
from foundation.settings import Settings
from ledger.state import BatchState, OutgoingTransfer, PreparedLeg, Table
from sinks.reconcile import read_until
from streamwallet.exit_codes import CommandError, ExitCode
from streamwallet.kafka_access import require_topics
from streamwallet.output import amount_text, iso_time, print_json, table, with_decimals
from topologies import partition_for

KINDS = {Table.OUTGOING: "transfer", Table.BATCHES: "batch", Table.PREPARED: "prepared-leg"}
RECORD_TYPES: dict[Table, type] = {
    Table.OUTGOING: OutgoingTransfer,
    Table.BATCHES: BatchState,
    Table.PREPARED: PreparedLeg,
}


@dataclasses.dataclass(frozen=True, slots=True)
class FlowInFlight:
    kind: str
    partition: int  # the changelog partition (shard) that holds the record
    waiting_on: int  # the partition that must act next
    record: dict[str, Any]  # the Avro record as the changelog holds it


def read_in_flight(settings: Settings, *, partition: int | None = None) -> list[FlowInFlight]:
    """Every unfinished flow in the changelog (or in one of its partitions), oldest key first."""
    changelog = settings.topology().changelog
    if partition is not None and not 0 <= partition < changelog.partitions:
        raise CommandError(f"--partition {partition}: the topology has partitions 0..{changelog.partitions - 1}")
    admin = require_topics(settings, changelog)
    numbers = list(range(changelog.partitions)) if partition is None else [partition]
    tables = {table.value.encode(): table for table in KINDS}
    latest: dict[tuple[int, bytes], bytes | None] = {}

    def take(message: Any) -> None:
        key = message.key() or b""
        if key[:1] in tables:
            latest[(message.partition(), key)] = message.value()

    read_until(settings, changelog.name, last_stable_offsets(admin, changelog.name, numbers), take)
    codec = Codec()
    found = []
    for (number, key), value in sorted(latest.items()):
        if value is None:
            continue  # a tombstone: the flow finished
        table_ = tables[key[:1]]
        record = codec.decode_record(value, expected=(RECORD_TYPES[table_],))
        found.append(
            FlowInFlight(
                kind=KINDS[table_],
                partition=number,
                waiting_on=partition_for(_waited_key(table_, record), changelog.partitions),
                record=record,
            )
        )
    return found


def _waited_key(table_: Table, record: dict[str, Any]) -> str:
    """The routing key of the partition that must act next."""
    return str(record["to_account_id"] if table_ is Table.OUTGOING else record["batch_id"])


def show_in_flight(settings: Settings, *, partition: int | None, as_json: bool) -> int:
    flows = read_in_flight(settings, partition=partition)
    if as_json:
        for flow in flows:
            print_json(_as_json(flow))
    elif flows:
        rows = [["KIND", "PARTITION", "WAITING ON", "ID", "DETAILS"]]
        rows += [[flow.kind, str(flow.partition), str(flow.waiting_on), *_described(flow)] for flow in flows]
        print(table(rows, indent=""))
    else:
        print("nothing in flight")
    return ExitCode.NO if flows else ExitCode.OK


def _as_json(flow: FlowInFlight) -> dict[str, Any]:
    record = flow.record
    if flow.kind == "transfer":
        record = with_decimals(record, record["currency"], ["amount"])
    elif flow.kind == "prepared-leg":
        record = {("amount_minor" if name == "amount" else name): value for name, value in record.items()}
    return {"kind": flow.kind, "partition": flow.partition, "waiting_on": flow.waiting_on, **record}


def _described(flow: FlowInFlight) -> list[str]:
    record = flow.record
    if flow.kind == "transfer":
        amount = amount_text(record["amount"], record["currency"])
        return [
            record["transfer_id"],
            f"{record['flow']} {record['from_account_id']} -> {record['to_account_id']} {amount} "
            f"{record['currency']}, command {record['command_id']}",
        ]
    if flow.kind == "batch":
        legs = len(record["legs"])
        return [
            record["batch_id"],
            f"{record['phase']}, votes {sum(record['voted'])}/{legs}, acks {sum(record['acked'])}/{legs}, "
            f"deadline {iso_time(record['deadline_ms'])}, command {record['command_id']}",
        ]
    return [
        f"{record['batch_id']}|{record['account_id']}",
        f"leg {record['leg_index']} {record['status']}, amount {record['amount']} (minor units), "
        f"command {record['command_id']}",
    ]
