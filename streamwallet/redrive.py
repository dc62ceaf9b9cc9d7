"""`streamwallet deadletter redrive`: send dead letters back to where they came from, once
the cause is fixed (a raised STREAMWALLET_MESSAGE_BYTES_MAX, a worker that knows a newer
schema).

Each dead letter keeps the original message's topic, partition, offset, key and value (up
to DEAD_LETTER_VALUE_BYTES_MAX). Re-driving produces that value with that key to the
original topic again, where the workers take it like any other message; one that fails
again becomes a new dead letter.

Which letters were re-driven is recorded on the topic `<prefix>.deadletter.redriven`
(compacted, one record per letter, keyed by the original's `<topic>/<partition>@<offset>`),
and each re-driven message is produced in the same Kafka transaction as its record:
either both are there or neither, so a crash halfway re-drives nothing twice, and a
second run skips what the first did. The record also says where the copy went: if the
copy fails again (the fix did not help), its new dead letter is refused until you pass
--again, rather than sent round once more by every run. A consumer group's committed offset could not do
this: with --reason, letters that were not selected would be passed over for good. The
transactional id `<prefix>.redrive` also fences a redrive still running elsewhere.

What is re-driven:
  * commands (the commands topic): safe to re-drive; a command is applied at most once
    per dedup id, so one that was meanwhile sent again by its client is answered from the
    dedup memory (within the idempotency window, STREAMWALLET_RETENTION_MS).
  * legs (the internal legs topic): only with --include-legs. A leg has no dedup id: the
    shard records every credit and stops with an InvariantViolation rather than apply a
    leg twice, so a leg sent twice by any other means puts its worker in a crash loop. A
    dead-lettered leg was never applied (it could not be decoded), its flow waits in
    flight, and re-driving it once (which this command guarantees) completes the flow.
  * never: letters of the query service's sink (their event is still on the events topic;
    fix the sink and run `streamwallet rebuild-views`), letters without a value, and
    letters whose value was cut at DEAD_LETTER_VALUE_BYTES_MAX (the client must send such a
    command again).

Exit codes: 0 every selected letter is re-driven (now or before), 2 Kafka or a topic
cannot be reached, 3 some selected letters cannot be re-driven (listed with the reason).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import socket
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from codec import Codec, DecodeError, DecodeErrorCode
from codec.deadletter import DEAD_LETTER_VALUE_BYTES_MAX, DeadLetter
from foundation.offsets import last_stable_offsets
from foundation.producing import flush
from foundation.settings import Settings
from sinks.reconcile import read_until
from streamwallet.exit_codes import CommandError, ExitCode
from streamwallet.kafka_access import operator_kafka_config, require_topics
from streamwallet.output import print_error, print_json, table
from topologies import TopicSpec

LETTERS_PER_TRANSACTION = 100
TRANSACTION_TIMEOUT_MS = 60_000
KAFKA_CALL_TIMEOUT_S = 60.0
MESSAGE_BYTES_MAX = 2 * 1024 * 1024  # the topics' max.message.bytes (topologies/topics.py)
COPY_HEADER = "redriven-to"  # on a record: where the re-driven copy went

LEGS_WARNING = (
    "WARNING: re-driving legs of the internal legs topic (--include-legs). A leg has no dedup id: "
    "each one is applied once, and a worker that receives a leg it already applied stops with an "
    "InvariantViolation (it refuses to credit twice) and crash-loops. These legs were never applied "
    "(they could not be decoded); this command re-drives each at most once. Never re-send legs by other means."
)


class Verdict(enum.StrEnum):
    REDRIVE = "redrive"  # to be (or, in a dry run, would be) re-driven
    REDRIVEN = "redriven"  # re-driven by this run
    ALREADY = "already re-driven"
    UNSELECTED = "not selected"
    REFUSED = "refused"  # re-drivable only with --include-legs
    IMPOSSIBLE = "cannot be re-driven"


@dataclasses.dataclass(slots=True)
class Decision:
    offset: int  # on the dead-letter topic
    letter: DeadLetter | None
    verdict: Verdict
    reason: str = ""

    @property
    def origin(self) -> str:
        if self.letter is None:
            return "?"
        return origin_key(self.letter)

    def to_json(self) -> dict[str, Any]:
        letter = self.letter
        return {
            "deadletter_offset": self.offset,
            "origin": self.origin,
            "reason_code": None if letter is None else letter.reason_code,
            "key": None if letter is None or letter.key is None else letter.key.decode(errors="backslashreplace"),
            "value_bytes": None if letter is None or letter.value is None else len(letter.value),
            "verdict": self.verdict.value,
            "why": self.reason,
        }


def origin_key(letter: DeadLetter) -> str:
    return f"{letter.source_topic}/{letter.source_partition}@{letter.source_offset}"


@dataclasses.dataclass(frozen=True, slots=True)
class RedriveOptions:
    reasons: frozenset[str]  # empty: every reason
    dry_run: bool
    include_legs: bool
    again: bool  # letters of copies an earlier run re-drove (they failed again) too
    as_json: bool


def redrive_dead_letters(settings: Settings, options: RedriveOptions) -> int:
    known = {code.value for code in DecodeErrorCode}
    if not options.reasons <= known:
        unknown = ", ".join(sorted(options.reasons - known))
        raise CommandError(f"unknown reason {unknown} (known: {', '.join(sorted(known))})")
    topology = settings.topology()
    admin = require_topics(settings, topology.deadletter, topology.redriven, topology.commands, topology.legs)
    codec = Codec()
    producer = None if options.dry_run else _producer(settings)
    done = _read_record(settings, admin, topology.redriven)  # after init_transactions: no open run's missed
    decisions = [
        _decide(offset, letter, error, done=done, settings=settings, options=options)
        for offset, letter, error in _read_letters(settings, admin, topology.deadletter, codec)
    ]
    if options.include_legs and any(
        decision.verdict is Verdict.REDRIVE and decision.letter and decision.letter.source_topic == topology.legs.name
        for decision in decisions
    ):
        print_error(LEGS_WARNING)
    if producer is not None:
        _redrive(producer, decisions, topology.redriven.name, codec)
    _report(decisions, settings, options)
    stuck = [decision for decision in decisions if decision.verdict in (Verdict.REFUSED, Verdict.IMPOSSIBLE)]
    return ExitCode.PARTIAL if stuck else ExitCode.OK


def _producer(settings: Settings) -> Producer:
    producer = Producer(
        operator_kafka_config(
            settings,
            **{
                "transactional.id": f"{settings.topic_prefix}.redrive",
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                "acks": "all",
                "enable.idempotence": True,
                "partitioner": "murmur2_random",  # where the ledger's own producers put a key
                "message.max.bytes": MESSAGE_BYTES_MAX,
                "client.id": f"redrive@{socket.gethostname()}",
            },
        )
    )
    try:
        producer.init_transactions(KAFKA_CALL_TIMEOUT_S)  # fences an earlier run, aborting its open transaction
    except KafkaException as exception:
        raise CommandError(f"cannot start the redrive's transactions: {exception.args[0].str()}") from None
    return producer


@dataclasses.dataclass(slots=True)
class _Record:
    """What earlier runs re-drove: the originals, and where their copies went."""

    originals: set[str] = dataclasses.field(default_factory=set)
    copies: dict[str, str] = dataclasses.field(default_factory=dict)  # copy -> original


def _read_record(settings: Settings, admin: Any, spec: TopicSpec) -> _Record:
    record = _Record()

    def take(message: Any) -> None:
        key = message.key()
        if key is None:
            return
        original = key.decode(errors="backslashreplace")
        record.originals.add(original)
        for name, value in message.headers() or []:
            if name == COPY_HEADER and value is not None:
                record.copies[value.decode(errors="backslashreplace")] = original

    read_until(settings, spec.name, last_stable_offsets(admin, spec.name, range(spec.partitions)), take)
    return record


def _read_letters(
    settings: Settings, admin: Any, spec: TopicSpec, codec: Codec
) -> list[tuple[int, DeadLetter | None, str]]:
    letters: list[tuple[int, DeadLetter | None, str]] = []

    def take(message: Any) -> None:
        try:
            letters.append((message.offset(), codec.decode(message.value() or b"", expected=(DeadLetter,)), ""))
        except DecodeError as error:
            letters.append((message.offset(), None, str(error)))

    read_until(settings, spec.name, last_stable_offsets(admin, spec.name, range(spec.partitions)), take)
    return letters


def _decide(
    offset: int, letter: DeadLetter | None, error: str, *, done: _Record, settings: Settings, options: RedriveOptions
) -> Decision:
    topology = settings.topology()
    if letter is None:
        return Decision(offset, None, Verdict.IMPOSSIBLE, f"the dead letter itself cannot be decoded: {error}")
    origin = origin_key(letter)
    if origin in done.originals:
        return Decision(offset, letter, Verdict.ALREADY)
    if options.reasons and letter.reason_code not in options.reasons:
        return Decision(offset, letter, Verdict.UNSELECTED)
    if origin in done.copies and not options.again:
        return Decision(
            offset,
            letter,
            Verdict.REFUSED,
            f"failed again after its re-drive (the original was {done.copies[origin]}): fix the cause, then --again",
        )
    if letter.source_topic == topology.events.name:
        return Decision(
            offset,
            letter,
            Verdict.IMPOSSIBLE,
            "a letter of the query service's sink: the event is still on the events topic; fix the sink and run "
            "streamwallet rebuild-views",
        )
    if letter.source_topic not in (topology.commands.name, topology.legs.name):
        return Decision(offset, letter, Verdict.IMPOSSIBLE, f"{letter.source_topic} is not a topic the ledger reads")
    if letter.value is None:
        return Decision(offset, letter, Verdict.IMPOSSIBLE, "the original had no value: there is nothing to send")
    if len(letter.value) >= DEAD_LETTER_VALUE_BYTES_MAX:
        return Decision(
            offset,
            letter,
            Verdict.IMPOSSIBLE,
            f"the value was cut at {DEAD_LETTER_VALUE_BYTES_MAX} bytes (DEAD_LETTER_VALUE_BYTES_MAX): the original "
            "is lost; its client must send it again",
        )
    if letter.source_topic == topology.legs.name and not options.include_legs:
        return Decision(offset, letter, Verdict.REFUSED, "an internal leg: only with --include-legs (see --help)")
    return Decision(offset, letter, Verdict.REDRIVE)


def _redrive(producer: Producer, decisions: list[Decision], marker_topic: str, codec: Codec) -> None:
    chosen = [
        (decision, decision.letter, decision.letter.value)
        for decision in decisions
        if decision.verdict is Verdict.REDRIVE and decision.letter is not None and decision.letter.value is not None
    ]
    for start in range(0, len(chosen), LETTERS_PER_TRANSACTION):
        batch = chosen[start : start + LETTERS_PER_TRANSACTION]
        try:
            producer.begin_transaction()
            copies = _produce_copies(producer, [(letter, value) for _, letter, value in batch])
            for (_, letter, _), copy in zip(batch, copies, strict=True):
                marker = dataclasses.replace(letter, value=None)  # the original stays on the dead-letter topic
                key = origin_key(letter).encode()
                producer.produce(marker_topic, codec.encode(marker), key, headers=[(COPY_HEADER, copy.encode())])
            producer.commit_transaction(KAFKA_CALL_TIMEOUT_S)
        except KafkaException as exception:
            error = exception.args[0]
            if not error.fatal():
                producer.abort_transaction(KAFKA_CALL_TIMEOUT_S)
            raise CommandError(
                f"re-driving stopped: {error.str()}. {start} letter(s) were re-driven and recorded before; "
                "the rest were not (run the command again)"
            ) from None
        for decision, _, _ in batch:
            decision.verdict = Verdict.REDRIVEN


def _produce_copies(producer: Producer, originals: list[tuple[DeadLetter, bytes]]) -> list[str]:
    """Produce each original again (in the open transaction); where each copy went,
    `<topic>/<partition>@<offset>`, once the broker has it."""
    copies: dict[int, str] = {}
    failures: list[KafkaError] = []

    def delivered(index: int, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            failures.append(error)
        else:
            copies[index] = f"{message.topic()}/{message.partition()}@{message.offset()}"

    for index, (letter, value) in enumerate(originals):
        partition = letter.source_partition if letter.key is None else -1  # a key goes where it hashes
        producer.produce(
            letter.source_topic, value, letter.key, partition=partition, on_delivery=functools.partial(delivered, index)
        )
    flush(producer, KAFKA_CALL_TIMEOUT_S)  # a redrive fenced by another raises KafkaException: said below
    if failures or len(copies) != len(originals):
        raise KafkaException(failures[0] if failures else KafkaError(KafkaError._TIMED_OUT, "copies not delivered"))
    return [copies[index] for index in range(len(originals))]


def _report(decisions: list[Decision], settings: Settings, options: RedriveOptions) -> None:
    counts = {verdict: sum(1 for d in decisions if d.verdict is verdict) for verdict in Verdict}
    if options.as_json:
        print_json(
            {
                "deadletter_topic": settings.topology().deadletter.name,
                "dry_run": options.dry_run,
                "letters": [d.to_json() for d in decisions if d.verdict not in (Verdict.ALREADY, Verdict.UNSELECTED)],
                "counts": {verdict.value: count for verdict, count in counts.items() if count},
            }
        )
        return
    listed = [d for d in decisions if d.verdict not in (Verdict.ALREADY, Verdict.UNSELECTED)]
    verb = {Verdict.REDRIVE: "would re-drive" if options.dry_run else "to re-drive", Verdict.REDRIVEN: "re-driven"}
    rows = [
        [
            verb.get(d.verdict, d.verdict.value),
            d.origin,
            "" if d.letter is None else d.letter.reason_code,
            f"dead letter {d.offset}",
            d.reason,
        ]
        for d in listed
    ]
    dry_run = " (dry run: nothing sent)" if options.dry_run else ""
    print(f"{len(decisions)} dead letter(s) on {settings.topology().deadletter.name}{dry_run}")
    if rows:
        print(table(rows))
    labels = {
        Verdict.REDRIVEN: "re-driven now",
        Verdict.REDRIVE: "would be re-driven",
        Verdict.ALREADY: "re-driven before",
        Verdict.UNSELECTED: "not selected",
        Verdict.REFUSED: "refused",
        Verdict.IMPOSSIBLE: "cannot be re-driven",
    }
    print(", ".join(f"{label}: {counts[verdict]}" for verdict, label in labels.items() if counts[verdict]) or "none")
