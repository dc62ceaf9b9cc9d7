"""`streamwallet tail events|results|deadletter|commands`: follow a topic, decoded, one
line per message (or one JSON object per line with --json), until Ctrl-C.

It starts at the topic's end (what is committed from now on) or, with --from-beginning,
at its start; `--no-follow` stops at the end the topic had when it started, and
`--max N` after N messages printed. Only committed messages are shown (read_committed:
nothing of an aborted transaction). `--account ID` keeps the messages about one account:
its events, the results that report it, the dead letters keyed by it, the commands that
name it. A message that cannot be decoded is shown as such and the tail goes on.

Amounts of events are shown in the account's currency; results carry no currency, so
their balances are in minor units. It never commits offsets or joins a consumer group.
Exit codes: 0 stopped (Ctrl-C, --max, --no-follow), 2 Kafka or the topic cannot be reached.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from codec import Codec, DecodeError
from codec.deadletter import DeadLetter
from foundation.offsets import last_stable_offsets
from foundation.settings import Settings
from ledger import commands
from ledger.events import AccountEvent, CommandResult
from streamwallet.exit_codes import CommandError, ExitCode
from streamwallet.kafka_access import operator_kafka_config, require_topics
from streamwallet.output import amount_text, iso_time, print_json, with_decimals

TOPICS = ("events", "results", "deadletter", "commands")
READ_BATCH_MESSAGES = 500
POLL_S = 0.2
EVENT_MONEY_FIELDS = ("amount", "held_change", "balance", "held", "available", "pending_in", "pending_out")
ACCOUNT_FIELDS = ("account_id", "from_account_id", "to_account_id", "parent_account_id")


@dataclasses.dataclass(frozen=True, slots=True)
class TailOptions:
    from_beginning: bool
    account: str | None
    follow: bool
    max_messages: int | None
    as_json: bool


def tail_topic(settings: Settings, topic_name: str, options: TailOptions) -> int:
    spec = getattr(settings.topology(), topic_name)
    admin = require_topics(settings, spec)
    partitions = list(range(spec.partitions))
    ends = last_stable_offsets(admin, spec.name, partitions)  # fixed now: "from the end" means from here
    consumer = Consumer(
        operator_kafka_config(
            settings,
            **{
                "group.id": f"{settings.topic_prefix}.tail",  # assign() only: never joins, never commits
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,  # marks where --no-follow stops
            },
        )
    )
    starts = {partition: OFFSET_BEGINNING if options.from_beginning else ends[partition] for partition in partitions}
    consumer.assign([TopicPartition(spec.name, partition, offset) for partition, offset in starts.items()])
    show = _Shower(topic_name, options, Codec())
    at_end: set[int] = set()  # partitions read to the end they had at the start (>= ends)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while show.wanted() and (options.follow or len(at_end) < len(partitions)):
            for message in consumer.consume(READ_BATCH_MESSAGES, timeout=POLL_S):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise CommandError(f"reading {spec.name} failed: {error.str()}")
                    at_end.add(message.partition() or 0)  # the end now, at or past the end at the start
                elif show.wanted():
                    show(message)
    except KeyboardInterrupt:
        pass
    except KafkaException as exception:
        raise CommandError(f"reading {spec.name} failed: {exception.args[0].str()}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        consumer.close()
    return ExitCode.OK


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class _Shower:
    """Decodes, filters and prints one message at a time; counts what it printed."""

    def __init__(self, topic_name: str, options: TailOptions, codec: Codec) -> None:
        self.options = options
        self.codec = codec
        self.printed = 0
        renderers: dict[str, Callable[[Any], str]] = {
            "events": _event_line,
            "results": _result_line,
            "deadletter": _dead_letter_line,
            "commands": _command_line,
        }
        self.render = renderers[topic_name]
        self.concerns: Callable[[Any, str], bool] = {
            "events": lambda event, account: event.account_id == account,
            "results": lambda result, account: any(p.account_id == account for p in result.positions),
            "deadletter": lambda letter, account: letter.key == account.encode(),
            "commands": lambda command, account: account in _accounts_named(command),
        }[topic_name]

    def wanted(self) -> bool:
        return self.options.max_messages is None or self.printed < self.options.max_messages

    def __call__(self, message: Message) -> None:
        where = f"{message.partition()}@{message.offset()}"
        timestamp_ms = message.timestamp()[1]
        try:
            value = self.codec.decode(message.value() or b"")
        except DecodeError as error:
            if self.options.account is not None and message.key() != self.options.account.encode():
                return
            self._print(
                {"partition": message.partition(), "offset": message.offset(), "error": str(error)},
                f"{where}  cannot be decoded: {error}",
            )
            return
        if self.options.account is not None and not self.concerns(value, self.options.account):
            return
        if self.options.as_json:
            record = self.codec.to_record(value)
            if isinstance(value, AccountEvent):
                record = with_decimals(record, value.currency, EVENT_MONEY_FIELDS)
            self._print(
                {
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "timestamp_ms": timestamp_ms,
                    "type": type(value).__name__,
                    "value": record,
                },
                "",
            )
        else:
            self._print(None, f"{iso_time(timestamp_ms)}  {where}  {self.render(value)}")

    def _print(self, document: dict[str, Any] | None, text: str) -> None:
        if self.options.as_json:
            print_json(document)
        else:
            print(text, flush=True)
        self.printed += 1


def _event_line(event: AccountEvent) -> str:
    currency = event.currency
    parts = [
        f"{event.account_id} #{event.sequence}",
        event.kind.value,
        f"{amount_text(event.amount, currency, signed=True)} {currency}",
        f"balance {amount_text(event.balance, currency)}",
        f"held {amount_text(event.held, currency)}",
    ]
    if event.counterparty_account_id:
        parts.append(f"counterparty {event.counterparty_account_id}")
    if event.code is not None:
        parts.append(event.code.value)
    parts.append(f"command {event.command_id}")
    return "  ".join(parts)


def _result_line(result: CommandResult) -> str:
    parts = [result.status.value, result.command_type, f"command {result.command_id}"]
    if result.code is not None:
        parts.append(f"{result.code.value}: {result.message}")
    if result.replayed:
        parts.append(f"repeat of {result.original_command_id}")
    parts += [f"{p.account_id} #{p.sequence} balance {p.balance} minor" for p in result.positions]
    return "  ".join(parts)


def _dead_letter_line(letter: DeadLetter) -> str:
    key = "none" if letter.key is None else letter.key.decode(errors="backslashreplace")
    size = "no value" if letter.value is None else f"{len(letter.value)} bytes"
    return (
        f"{letter.reason_code}  from {letter.source_topic}/{letter.source_partition}@{letter.source_offset}  "
        f"key {key}  {size}  by {letter.worker_id}: {letter.reason}"
    )


def _command_line(command: commands.Command) -> str:
    fields = dataclasses.asdict(command)
    command_id = fields.pop("command_id")
    details = "  ".join(f"{name}={value}" for name, value in fields.items() if value not in (None, {}, ""))
    return f"{type(command).__name__}  command {command_id}  {details}"


def _accounts_named(command: commands.Command) -> set[str]:
    named = {getattr(command, field) for field in ACCOUNT_FIELDS if isinstance(getattr(command, field, None), str)}
    named.update(leg.account_id for leg in getattr(command, "legs", []))
    return named
