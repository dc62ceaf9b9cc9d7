"""Hostile input on the commands and legs topics, against a real worker (issue 11, "Proof").

A seeded generator writes 1,000+ hostile messages straight to the topics, in categories:
random bytes; truncated Avro; wrong fingerprints; valid Avro with absurd values (commands and
legs); legs that claim flows and batches that never existed; copies of real legs replayed;
odd framing (empty values, tombstones, messages over the size limit). Then:

- every hostile message is accounted for: a command with a rejection result (a code), any
  message dead-lettered with a reason — itself, or, for a leg that fits well enough to be
  acted on (a forged credit, a forged prepare), the leg it caused, which carries its id;
- the worker never stops, and still processes normal commands afterwards;
- accounts the fuzz did not address do not change (their events and the changelog), and
  nothing is left reserved or in flight.

It prints, per category, how many messages and how each was answered.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from confluent_kafka import Producer

from bench.topics import changelog_state, read_topic
from codec import Codec
from codec.avro import DecodeErrorCode
from codec.deadletter import DEAD_LETTER_KEY_BYTES_MAX, DeadLetter
from codec.schemas import SCHEMA_ROOT, load_folder
from foundation.settings import Settings
from ledger import commands, legs
from ledger.errors import ErrorCode
from ledger.events import AccountEvent, CommandResult, Position, ResultStatus
from ledger.legs import Flow
from ledger.limits import AMOUNT_MAX
from ledger.state import Table
from streams.processor import LedgerProcessor
from tests.principals import TESTER
from topologies import partition_for

pytestmark = pytest.mark.kafka

SEED = 1_106_2025
PARTITIONS = 8
HOSTILE_MIN = 1_000
ACCOUNTED_WAIT_S = 90.0
RESULT_WAIT_S = 60.0
PROBE_INTERVAL_S = 1.0

# -- the worker, in this process -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Worker:
    processor: LedgerProcessor
    thread: threading.Thread
    failure: list[BaseException]


@pytest.fixture
def worker(settings: Settings) -> Iterator[Worker]:
    processor = LedgerProcessor(settings)
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            processor.run(stop)
        except BaseException as error:
            failure.append(error)
            raise

    thread = threading.Thread(target=run, name="ledger-worker")
    thread.start()
    assert processor.ready.wait(60)
    yield Worker(processor, thread, failure)
    stop.set()
    thread.join(30)


# -- writing and reading -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Hostile:
    """One hostile message and how it is to be accounted for."""

    category: str
    topic: str  # "commands" or "legs"
    value: bytes | None
    key: bytes | None
    partition: int | None = None  # explicit (misrouted), or by Kafka's partitioner
    command_id: str | None = None  # a decodable command: its result is keyed by it
    ids: tuple[str, ...] = ()  # a leg's flow or batch id: a leg it causes carries it
    offset: tuple[str, int, int] | None = None  # where it landed


class Topics:
    def __init__(self, settings: Settings, codec: Codec) -> None:
        self.settings, self.codec = settings, codec
        self.producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "partitioner": "murmur2_random",
                "message.max.bytes": 2 * 1024 * 1024 + 4096,
                "linger.ms": 5,
            }
        )

    def name(self, suffix: str) -> str:
        return f"{self.settings.topic_prefix}.{suffix}"

    def send(self, command: commands.Command) -> None:
        self.producer.produce(self.name("commands"), self.codec.encode(command), command.routing_key.encode())

    def write(self, hostile: Hostile) -> None:
        def delivered(error: Any, message: Any) -> None:
            assert error is None, error
            hostile.offset = (hostile.topic, message.partition(), message.offset())

        partition = -1 if hostile.partition is None else hostile.partition  # -1: Kafka's partitioner
        self.producer.produce(
            self.name(hostile.topic), hostile.value, hostile.key, partition=partition, on_delivery=delivered
        )
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    def results(self) -> dict[str, list[CommandResult]]:
        found: dict[str, list[CommandResult]] = collections.defaultdict(list)
        for message in read_topic(self.settings.bootstrap_servers, self.name("results")):
            result = self.codec.decode(message.value())
            found[result.command_id].append(result)
        return found

    def dead_letters(self) -> list[DeadLetter]:
        return [
            self.codec.decode(message.value())
            for message in read_topic(self.settings.bootstrap_servers, self.name("deadletter"))
        ]

    def events(self) -> list[AccountEvent]:
        return [
            self.codec.decode(message.value())
            for message in read_topic(self.settings.bootstrap_servers, self.name("events"))
        ]

    def real_legs(self) -> list[tuple[int, bytes, bytes, Any]]:
        """(partition, key, value, leg) of every leg a shard wrote, ticks left out."""
        found = []
        for message in read_topic(self.settings.bootstrap_servers, self.name("legs")):
            leg = self.codec.decode(message.value())
            if not isinstance(leg, legs.Tick):
                found.append((message.partition(), message.key(), message.value(), leg))
        return found

    def await_results(self, command_ids: set[str]) -> dict[str, list[CommandResult]]:
        deadline = time.monotonic() + RESULT_WAIT_S
        while True:
            found = self.results()
            if command_ids <= set(found):
                return found
            assert time.monotonic() < deadline, f"no result for {sorted(command_ids - set(found))[:10]}"
            time.sleep(PROBE_INTERVAL_S)


# -- the accounts --------------------------------------------------------------------------------------------------

RUN = uuid.uuid4().hex[:6]
TARGETS = [f"t{index}-{RUN}" for index in range(6)]  # the fuzz may address these
YEN_TARGET = f"tj-{RUN}"
BYSTANDERS = [f"by{index}-{RUN}" for index in range(6)]  # never named by the fuzz
GHOSTS = [f"ghost{index}-{RUN}" for index in range(3)]  # never opened
FUNDS = 100_000


def ids(prefix: str) -> dict[str, Any]:
    tag = f"{prefix}-{uuid.uuid4().hex[:10]}"
    return {"command_id": tag, "dedup_id": tag}


def setup_commands() -> list[commands.Command]:
    """Accounts, money, and real flows across partitions among the targets (whose legs the
    fuzz replays) and among the bystanders (whose legs it never touches)."""
    sent: list[commands.Command] = []
    for account in [*TARGETS, *BYSTANDERS]:
        sent.append(
            commands.OpenAccount(
                principal=TESTER, owner=TESTER.principal_id, **ids("open"), account_id=account, currency="USD"
            )
        )
        sent.append(commands.Deposit(principal=TESTER, **ids("fund"), account_id=account, amount=FUNDS, currency="USD"))
    sent.append(
        commands.OpenAccount(
            principal=TESTER, owner=TESTER.principal_id, **ids("open"), account_id=YEN_TARGET, currency="JPY"
        )
    )
    for group, batch_id in ((TARGETS, f"tb-{RUN}"), (BYSTANDERS, f"bb-{RUN}")):
        for source, destination in itertools.pairwise(group):
            sent.append(
                commands.Transfer(
                    principal=TESTER,
                    **ids("setup"),
                    from_account_id=source,
                    to_account_id=destination,
                    amount=100,
                    currency="USD",
                )
            )
        sent.append(
            commands.Batch(
                principal=TESTER,
                **ids("setup"),
                batch_id=batch_id,
                legs=[
                    commands.BatchLeg(account_id=group[0], amount=-300, currency="USD"),
                    commands.BatchLeg(account_id=group[2], amount=100, currency="USD"),
                    commands.BatchLeg(account_id=group[4], amount=200, currency="USD"),
                ],
            )
        )
        sent.append(
            commands.Transfer(
                principal=TESTER,
                **ids("setup"),
                from_account_id=group[1],
                to_account_id=GHOSTS[0],
                amount=5,
                currency="USD",
            )
        )
    return sent


# -- the hostile messages ------------------------------------------------------------------------------------------


class Generator:
    """Seeded: the same messages in every run, but for the run's account names."""

    def __init__(self, codec: Codec, real_legs: list[tuple[int, bytes, bytes, Any]], settings: Settings) -> None:
        self.rng = random.Random(SEED)
        self.codec = codec
        self.real_legs = real_legs
        self.max_bytes = settings.message_bytes_max
        self.serial = 0
        released = load_folder(SCHEMA_ROOT / "released" / "v1", "v1")
        self.v1_capture_fingerprint = released["streamwallet.command.CaptureHold"].fingerprint

    def tag(self, prefix: str) -> str:
        self.serial += 1
        return f"fz{prefix}{self.serial}-{RUN}"

    def target(self) -> str:
        return self.rng.choice([*TARGETS, YEN_TARGET, *GHOSTS])

    def text(self, length_max: int = 40) -> str:
        return "".join(self.rng.choice("abcXYZ09 |@é-\x00") for _ in range(self.rng.randint(0, length_max)))

    # Random bytes, anywhere.
    def random_bytes(self) -> Hostile:
        topic = self.rng.choice(["commands", "legs"])
        body = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 300)))
        if self.rng.random() < 0.3:
            body = b"\xc3\x01" + body  # the marker, then noise
        key = None if self.rng.random() < 0.2 else self.text().encode()
        return Hostile("random bytes", topic, body, key)

    # A real encoding cut short.
    def truncated(self) -> Hostile:
        if self.rng.random() < 0.5:
            command = self.valid_command()
            data = self.codec.encode(command)
            topic, key = "commands", command.routing_key.encode()
        else:
            _, key, data, _ = self.rng.choice(self.real_legs)
            topic = "legs"
        return Hostile("truncated Avro", topic, data[: self.rng.randint(0, len(data) - 1)], key)

    def valid_command(self) -> commands.Command:
        account = self.rng.choice(TARGETS)
        return commands.Deposit(principal=TESTER, **ids(self.tag("t")), account_id=account, amount=1, currency="USD")

    # A body under a fingerprint that is not its writer's.
    def wrong_fingerprint(self) -> Hostile:
        command = self.valid_command()
        body = self.codec.encode(command)[10:]
        kind = self.rng.randrange(3)
        if kind == 0:
            fingerprint = bytes(self.rng.randrange(256) for _ in range(8))  # no schema has it
        elif kind == 1:  # another record type's: a commands topic does not carry it
            fingerprint = self.codec.fingerprint(self.rng.choice([AccountEvent, legs.Tick, CommandResult]))
        else:  # the released v1 CaptureHold's: the body does not fit it
            fingerprint = self.v1_capture_fingerprint
        return Hostile("wrong fingerprints", "commands", b"\xc3\x01" + fingerprint + body, command.routing_key.encode())

    # Valid Avro, absurd values: every one must be rejected with a code.
    def absurd_command(self) -> Hostile:
        maker = self.rng.choice(self.ABSURD_COMMANDS)
        command, partition = maker(self), None
        if isinstance(command, tuple):
            command, partition = command
        return Hostile(
            "absurd commands",
            "commands",
            self.codec.encode(command),
            command.routing_key.encode()[:100_000],
            partition=partition,
            command_id=command.command_id,
        )

    def _deposit(self, **fields: Any) -> commands.Deposit:
        values: dict[str, Any] = {
            **ids(self.tag("c")),
            "account_id": self.rng.choice(TARGETS),
            "amount": 1,
            "currency": "USD",
        }
        values.update(fields)
        return commands.Deposit(principal=TESTER, **values)

    ABSURD_COMMANDS: ClassVar[list[Callable[[Generator], Any]]] = [
        lambda g: g._deposit(amount=g.rng.choice([0, -1, -(2**63), -AMOUNT_MAX])),
        lambda g: g._deposit(currency=g.rng.choice(["", "usd", "XAU", "€€€", "A" * 1_000])),
        lambda g: g._deposit(metadata={f"k{i}": "v" for i in range(g.rng.choice([17, 1_000]))}),
        lambda g: g._deposit(metadata={"k": "v" * 10_000}),
        lambda g: g._deposit(account_id=g.rng.choice(["", "a" * 100_000, "a|b", "sp ace", "é"])),
        lambda g: g._deposit(command_id=f"{g.tag('c')} with a space"),
        lambda g: g._deposit(dedup_id=g.rng.choice(["", "d" * 200])),
        lambda g: g._deposit(account_id=g.rng.choice(GHOSTS)),
        lambda g: g._deposit(account_id=YEN_TARGET, currency="USD"),
        # A valid deposit on a partition that does not own its account.
        lambda g: (
            (d := g._deposit()),
            (partition_for(d.account_id, PARTITIONS) + 1 + g.rng.randrange(PARTITIONS - 1)) % PARTITIONS,
        ),
        lambda g: commands.Withdraw(
            principal=TESTER, **ids(g.tag("c")), account_id=g.rng.choice(TARGETS), amount=AMOUNT_MAX, currency="USD"
        ),
        lambda g: commands.Transfer(
            principal=TESTER,
            **ids(g.tag("c")),
            from_account_id=(a := g.rng.choice(TARGETS)),
            to_account_id=g.rng.choice([a, *GHOSTS]),
            amount=g.rng.choice([0, 7]),
            currency="USD",
        ),
        lambda g: commands.OpenAccount(
            principal=TESTER,
            owner=TESTER.principal_id,
            **ids(g.tag("c")),
            account_id=g.rng.choice([*TARGETS, f"new-{g.tag('a')}"]),
            currency=g.rng.choice(["USD", "", "JPYX"]),
            lower_limit=g.rng.choice([1, -(2**63)]),
            upper_limit=g.rng.choice([-1, AMOUNT_MAX]),
            parent_account_id=g.rng.choice([None, "p a", "x" * 65]),
        ),
        lambda g: commands.UpdateLimits(
            principal=TESTER,
            **ids(g.tag("c")),
            account_id=g.rng.choice(TARGETS),
            lower_limit=g.rng.choice([AMOUNT_MAX, 5, -(2**63)]),
            upper_limit=g.rng.choice([-(2**63), 0]),
            currency=g.rng.choice(["", "JPY", "usd"]),
        ),
        lambda g: commands.PlaceHold(
            principal=TESTER,
            **ids(g.tag("c")),
            account_id=g.rng.choice(TARGETS),
            hold_id=g.rng.choice(["", "h|1", "h"]),
            amount=g.rng.choice([0, AMOUNT_MAX]),
            currency="USD",
            ttl_ms=g.rng.choice([-1, 0, 2**63 - 1]),
        ),
        lambda g: commands.CaptureHold(
            principal=TESTER,
            **ids(g.tag("c")),
            account_id=g.rng.choice(TARGETS),
            hold_id=f"no-such-{g.tag('h')}",
            amount=g.rng.choice([1, 0, -5]),
            to_account_id=g.rng.choice(TARGETS),
            currency=g.rng.choice(["", "USD", "JPY"]),
        ),
        lambda g: commands.VoidHold(
            principal=TESTER, **ids(g.tag("c")), account_id=g.rng.choice(TARGETS), hold_id=g.tag("h")
        ),
        lambda g: commands.ReverseTransfer(
            principal=TESTER,
            **ids(g.tag("c")),
            account_id=g.rng.choice(TARGETS),
            transfer_id=g.tag("x"),
            reason="r" * 300,
        ),
        lambda g: commands.Batch(
            principal=TESTER,
            **ids(g.tag("c")),
            batch_id=g.tag("b"),
            legs=[
                commands.BatchLeg(account_id=g.rng.choice(TARGETS), amount=g.rng.choice([-3, 0, 5]), currency="USD")
                for _ in range(g.rng.choice([0, 1, 2, 17, 500]))
            ],
        ),
        lambda g: commands.QueryCommand(
            principal=TESTER,
            command_id=g.tag("c"),
            account_id=g.rng.choice(TARGETS),
            target_command_id=g.rng.choice(["", g.tag("q")]),
        ),
        lambda g: commands.CloseAccount(
            principal=TESTER, **ids(g.tag("c")), account_id=g.rng.choice([*TARGETS, *GHOSTS])
        ),
        lambda g: commands.LockAccount(
            principal=TESTER, **ids(g.tag("c")), account_id=g.rng.choice(GHOSTS), reason="x" * 257
        ),
    ]

    # Valid Avro legs with absurd values.
    def absurd_leg(self) -> Hostile:
        tag = self.tag("l")
        account = self.target()
        position = Position(account_id=account, sequence=self.rng.choice([0, -1, 2**63 - 1]), balance=0, available=0)
        leg: Any = self.rng.choice(
            [
                legs.CreditLeg(
                    transfer_id=tag,
                    flow=Flow.TRANSFER,
                    from_account_id=account,
                    to_account_id=self.target(),
                    amount=self.rng.choice([0, -1, -(2**63), AMOUNT_MAX]),
                    currency=self.rng.choice(["", "XXX", "USD"]),
                    command_id=self.rng.choice([tag, "other"]),
                    dedup_id="",
                    command_type=self.rng.choice(["Deposit", "", "Transfer"]),
                    source_position=position,
                    reversal_of=self.rng.choice([None, "x"]),
                    metadata={f"k{i}": "v" for i in range(self.rng.choice([0, 40]))},
                ),
                legs.BatchPrepare(
                    batch_id=tag,
                    leg_index=self.rng.choice([-1, 16, 2**31 - 1]),
                    account_id=account,
                    amount=self.rng.choice([0, -(2**63), AMOUNT_MAX]),
                    currency=self.rng.choice(["", "XXX"]),
                    command_id="",
                    dedup_id="",
                    incarnation=-1,
                ),
                legs.BatchVote(
                    batch_id=tag,
                    leg_index=self.rng.choice([-(2**31), 99]),
                    account_id="",
                    accepted=self.rng.random() < 0.5,
                    code=ErrorCode.LIMIT_EXCEEDED,
                    message="m" * 10_000,
                    incarnation=-5,
                    sequence=-5,
                ),
                legs.BatchAck(
                    batch_id=tag,
                    leg_index=-3,
                    account_id=account,
                    position=Position(account_id="other", sequence=1, balance=0, available=0),
                    incarnation=-1,
                ),
            ]
        )
        return Hostile("absurd legs", "legs", self.codec.encode(leg), leg.routing_key.encode()[:100_000], ids=(tag,))

    # Legs for flows and batches that never existed (well-formed: they pass the field checks).
    def phantom_leg(self) -> Hostile:
        tag = self.tag("p")
        source, destination = self.rng.sample([*TARGETS, *GHOSTS], 2)
        kind = self.rng.randrange(7)
        result = CommandResult(
            command_id=tag,
            dedup_id=tag,
            command_type="Transfer",
            status=ResultStatus.ACCEPTED,
            code=None,
            message="",
            reference_id=tag,
            positions=[],
            replayed=False,
            original_command_id=tag,
            decided_at_ms=0,
            queried=None,
        )
        common: dict[str, Any] = {
            "transfer_id": tag,
            "flow": Flow.TRANSFER,
            "from_account_id": source,
            "to_account_id": destination,
        }
        leg: Any
        if kind == 0:
            leg = legs.SettleLeg(**common, amount=self.rng.randint(1, 10**6), result=result, source_sequence=9)
        elif kind == 1:
            leg = legs.RefundLeg(
                **common,
                amount=self.rng.randint(1, 10**6),
                code=ErrorCode.ACCOUNT_LOCKED,
                message="no",
                decided_at_ms=0,
                source_sequence=9,
            )
        elif kind == 2:  # a credit of a flow no source debited: credited if it fits (see ledger/README.md)
            leg = legs.CreditLeg(
                **common,
                amount=self.rng.randint(1, 100),
                currency="USD",
                command_id=tag,
                dedup_id=tag,
                command_type="Transfer",
                source_position=Position(
                    account_id=source, sequence=self.rng.randint(1, 2**40), balance=0, available=0
                ),
                reversal_of=None,
                metadata={},
            )
        else:
            batch_fields: dict[str, Any] = {"batch_id": tag, "leg_index": self.rng.randrange(3), "account_id": source}
            if kind == 3:
                leg = legs.BatchPrepare(
                    **batch_fields,
                    amount=self.rng.choice([-1, 1]) * self.rng.randint(1, 500),
                    currency="USD",
                    command_id=tag,
                    dedup_id=tag,
                    incarnation=self.rng.randint(1, 2**40),
                )
            elif kind == 4:
                accepted = self.rng.random() < 0.5
                leg = legs.BatchVote(
                    **batch_fields,
                    accepted=accepted,
                    code=None if accepted else ErrorCode.LIMIT_EXCEEDED,
                    message="",
                    incarnation=self.rng.randint(1, 2**40),
                    sequence=self.rng.randint(1, 2**40) if accepted else 0,
                )
            elif kind == 5:
                commit = self.rng.random() < 0.5
                leg = legs.BatchDecision(
                    **batch_fields,
                    commit=commit,
                    command_id=tag,
                    dedup_id=tag,
                    code=None if commit else ErrorCode.BATCH_TIMEOUT,
                    incarnation=self.rng.randint(1, 2**40),
                    sequence=self.rng.randint(1, 2**40),
                )
            else:
                leg = legs.BatchAck(**batch_fields, position=None, incarnation=self.rng.randint(1, 2**40))
        partition = None
        if self.rng.random() < 0.1:  # and now and then on a partition that does not own it
            owner = partition_for(leg.routing_key, PARTITIONS)
            partition = (owner + 1 + self.rng.randrange(PARTITIONS - 1)) % PARTITIONS
        return Hostile(
            "legs of flows that never existed",
            "legs",
            self.codec.encode(leg),
            leg.routing_key.encode(),
            partition=partition,
            ids=(tag,),
        )

    # Real legs, delivered again.
    def replayed_leg(self) -> Hostile:
        partition, key, value, leg = self.rng.choice(self.real_legs)
        flow_id = str(getattr(leg, "transfer_id", None) or getattr(leg, "batch_id", ""))
        return Hostile("real legs replayed", "legs", value, key, partition=partition, ids=(flow_id,))

    # Empty values, tombstones, more than the worker accepts.
    def odd_framing(self) -> Hostile:
        topic = self.rng.choice(["commands", "legs"])
        value = self.rng.choice([None, b"", b"\xc3", b"\xc3\x01", b"\xc3\x01" + b"\x00" * (self.max_bytes + 1 - 2)])
        return Hostile("odd framing", topic, value, self.rng.choice([None, b"", self.target().encode()]))

    def all(self) -> list[Hostile]:
        plan: list[tuple[Callable[[], Hostile], int]] = [
            (self.random_bytes, 200),
            (self.truncated, 150),
            (self.wrong_fingerprint, 100),
            (self.absurd_command, 250),
            (self.absurd_leg, 100),
            (self.phantom_leg, 200),
            (self.replayed_leg, 100),
            (self.odd_framing, 20),
        ]
        hostile = [make() for make, count in plan for _ in range(count)]
        self.rng.shuffle(hostile)
        return hostile


# -- accounting ----------------------------------------------------------------------------------------------------


def leg_ids(value: bytes | None, codec: Codec) -> set[str]:
    """The flow and batch ids of a dead-lettered leg (none if it does not decode)."""
    try:
        leg = codec.decode(value or b"")
    except Exception:  # noqa: BLE001 - undecodable: accounted by its position
        return set()
    return {found for name in ("transfer_id", "batch_id") if isinstance(found := getattr(leg, name, None), str)}


@dataclasses.dataclass
class Ledger:
    """How each hostile message was answered."""

    answers: dict[str, collections.Counter[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    unaccounted: list[Hostile] = dataclasses.field(default_factory=list)


def account_for(hostile: list[Hostile], topics: Topics) -> Ledger:
    letters = topics.dead_letters()
    results = topics.results()
    by_position: dict[tuple[str, int, int], DeadLetter] = {
        (letter.source_topic, letter.source_partition, letter.source_offset): letter for letter in letters
    }
    caused: dict[str, str] = {}
    for letter in letters:
        for found in leg_ids(letter.value, topics.codec):
            caused.setdefault(found, letter.reason_code)
    ledger = Ledger()
    for message in hostile:
        assert message.offset is not None
        topic, partition, offset = message.offset
        found_letter = by_position.get((topics.name(topic), partition, offset))
        answer: str | None = None
        if found_letter is not None:
            assert found_letter.reason, found_letter
            answer = f"dead letter {found_letter.reason_code}"
        elif message.command_id is not None and message.command_id in results:
            (result,) = results[message.command_id]
            assert result.status is ResultStatus.REJECTED and result.code is not None, result
            answer = f"rejected {result.code.value}"
        elif any(found in caused for found in message.ids):
            code = next(caused[found] for found in message.ids if found in caused)
            answer = f"acted on; the leg it caused dead-lettered {code}"
        if answer is None:
            ledger.unaccounted.append(message)
        else:
            ledger.answers[message.category][answer] += 1
    return ledger


def report(hostile: list[Hostile], ledger: Ledger) -> None:
    print(f"\n{len(hostile)} hostile messages")
    for category in sorted(ledger.answers):
        answers = ledger.answers[category]
        print(f"  {category}: {sum(answers.values())}")
        for answer, count in answers.most_common():
            print(f"      {count:5d}  {answer}")


# -- the test ------------------------------------------------------------------------------------------------------


def test_hostile_messages_are_answered_and_stop_nothing(settings: Settings, worker: Worker) -> None:
    assert settings.partitions == PARTITIONS
    codec = Codec()
    topics = Topics(settings, codec)
    setup = setup_commands()
    for command in setup:
        topics.send(command)
    topics.flush()
    topics.await_results({command.command_id for command in setup})
    before = settled_state(settings, codec)  # every flow of the setup has ended
    real = [
        entry for entry in topics.real_legs() if not any(name.startswith(("by", "bb")) for name in _named(entry[3]))
    ]
    assert real, "the setup's flows wrote no legs"
    bystanders_before = {account: before[Table.ACCOUNTS][account] for account in BYSTANDERS}
    events_before = bystander_events(topics)

    hostile = Generator(codec, real, settings).all()
    assert len(hostile) >= HOSTILE_MIN
    started = time.monotonic()
    for message in hostile:
        topics.write(message)
    topics.flush()

    deadline = time.monotonic() + ACCOUNTED_WAIT_S
    while True:
        assert not worker.failure and worker.thread.is_alive(), f"the worker stopped: {worker.failure}"
        ledger = account_for(hostile, topics)
        if not ledger.unaccounted or time.monotonic() > deadline:
            break
        time.sleep(PROBE_INTERVAL_S)
    report(hostile, ledger)
    print(f"  answered in {time.monotonic() - started:.1f} s")
    assert not ledger.unaccounted, [
        (message.category, message.topic, message.offset, message.ids, message.command_id)
        for message in ledger.unaccounted[:10]
    ]

    # The worker goes on: new accounts, money in, money across partitions.
    after: list[commands.Command] = [
        commands.OpenAccount(
            principal=TESTER, owner=TESTER.principal_id, **ids("after"), account_id=f"after-a-{RUN}", currency="USD"
        ),
        commands.OpenAccount(
            principal=TESTER, owner=TESTER.principal_id, **ids("after"), account_id=f"after-b-{RUN}", currency="USD"
        ),
        commands.Deposit(principal=TESTER, **ids("after"), account_id=f"after-a-{RUN}", amount=50, currency="USD"),
        commands.Transfer(
            principal=TESTER,
            **ids("after"),
            from_account_id=f"after-a-{RUN}",
            to_account_id=f"after-b-{RUN}",
            amount=20,
            currency="USD",
        ),
    ]
    for next_command in after:
        topics.send(next_command)
        topics.flush()
        (answered,) = topics.await_results({next_command.command_id})[next_command.command_id]
        assert answered.status is ResultStatus.ACCEPTED, answered
    assert not worker.failure and worker.thread.is_alive()

    # Untouched accounts are untouched; nothing the fuzz began is left reserved or in flight.
    state = settled_state(settings, codec)
    assert {account: state[Table.ACCOUNTS][account] for account in BYSTANDERS} == bystanders_before
    assert bystander_events(topics) == events_before
    for account in TARGETS:
        target = state[Table.ACCOUNTS][account]
        assert (target.held, target.pending_in, target.pending_out) == (0, 0, 0), target


def settled_state(settings: Settings, codec: Codec) -> dict[Table, dict[str, Any]]:
    """The shards' tables once nothing is in flight, reserved or being decided."""
    deadline = time.monotonic() + RESULT_WAIT_S
    while True:
        state = changelog_state(settings, codec)
        busy = {table: state[table] for table in (Table.OUTGOING, Table.PREPARED, Table.BATCHES) if state[table]}
        if not busy:
            return state
        assert time.monotonic() < deadline, f"still in flight: {busy}"
        time.sleep(PROBE_INTERVAL_S)


def _named(leg: Any) -> list[str]:
    return [
        value
        for name in ("from_account_id", "to_account_id", "account_id", "batch_id")
        if isinstance(value := getattr(leg, name, None), str)
    ]


def bystander_events(topics: Topics) -> dict[str, list[AccountEvent]]:
    """Each bystander's events in sequence order (the topic's partitions interleave in any order)."""
    found: dict[str, list[AccountEvent]] = collections.defaultdict(list)
    for event in topics.events():
        if event.account_id in BYSTANDERS:
            found[event.account_id].append(event)
    return dict(found)


HUGE_KEY_BYTES = 1_500_000  # under the topics' 2 MiB limit; a dead letter carries it twice


def test_a_message_with_a_huge_key_does_not_stop_the_worker(settings: Settings, worker: Worker) -> None:
    """A message whose key alone is too large to copy into a dead letter (the letter carries the
    key twice: in its body and as its Kafka key) is dead-lettered with the key cut to a bound;
    the worker's producer is never replaced for it, and the next command on its partition is
    decided (defect: the letter exceeded max.message.bytes and the worker stopped on it)."""
    topics = Topics(settings, Codec())
    after = commands.OpenAccount(
        principal=TESTER, owner=TESTER.principal_id, **ids("after"), account_id=f"after-{RUN}", currency="USD"
    )
    partition = partition_for(after.routing_key, settings.partitions)
    huge = Hostile("huge key", "commands", b"not avro", b"k" * HUGE_KEY_BYTES, partition=partition)
    topics.write(huge)
    topics.send(after)
    topics.flush()
    deadline = time.monotonic() + RESULT_WAIT_S
    while after.command_id not in topics.results():
        assert not worker.failure and worker.thread.is_alive(), f"the worker stopped: {worker.failure}"
        assert time.monotonic() < deadline, "no result after the huge key"
        time.sleep(PROBE_INTERVAL_S)
    assert huge.offset is not None
    suffix, written_partition, written_offset = huge.offset
    (letter,) = [
        letter
        for letter in topics.dead_letters()
        if (letter.source_topic, letter.source_partition, letter.source_offset)
        == (topics.name(suffix), written_partition, written_offset)
    ]
    assert letter.reason_code == DecodeErrorCode.UNDECODABLE.value
    assert letter.key is not None and letter.key == b"k" * DEAD_LETTER_KEY_BYTES_MAX
    assert worker.processor.transactions_replaced() == 0, "the producer failed on the letter"
