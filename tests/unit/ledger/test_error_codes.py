"""Every ErrorCode the shard can produce, table driven, and what a rejection must not do.

A row: the setup (commands that must be accepted, or time passing), the command under
test, the code its one final result must carry. The runner also checks that the
rejection changed no state and emitted no event (a cross-shard rejection is a debit
and its refund: events, but every balance as it was), and that afterwards every
command has exactly one final result and the balance identities hold.

Placement: "A@0", "B@0", "J@0" live on shard 0, "X@1" on shard 1, "Y@2" on shard 2;
"J@0" and "JX@1" hold JPY, the others USD.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Sequence
from typing import Any

import fastavro
import pytest

from codec import Codec
from codec.schemas import RELEASED_DIR, SCHEMA_ROOT, load_folder
from ledger.commands import (
    Batch,
    BatchLeg,
    CaptureHold,
    CloseAccount,
    Command,
    Deposit,
    LockAccount,
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
)
from ledger.errors import ErrorCode
from ledger.events import CommandResult, EventKind, Position, ResultStatus
from ledger.legs import BatchPrepare, CreditLeg, Flow, Leg, RefundLeg
from ledger.limits import AMOUNT_MAX, DEDUP_DUPLICATES_INDEXED_MAX, DEDUP_WAITERS_MAX, HOLD_TTL_MS_MAX
from ledger.principals import ANONYMOUS
from ledger.shard import ShardConfig, payload_digest
from ledger.state import Table
from tests.principals import TESTER
from tests.unit.ledger.cluster import (
    Cluster,
    check_one_result_each,
    check_quiescent,
    check_state,
    fresh,
    make,
)

E = ErrorCode
TTL = 60_000

# -- command builders (fresh command and dedup ids unless given) ---------------------------------------------------


def open_(account_id: str, currency: str = "USD", **fields: Any) -> OpenAccount:
    result: OpenAccount = make(OpenAccount, account_id=account_id, currency=currency, **fields)
    return result


def deposit(account_id: str, amount: int, currency: str = "USD", **fields: Any) -> Deposit:
    result: Deposit = make(Deposit, account_id=account_id, amount=amount, currency=currency, **fields)
    return result


def withdraw(account_id: str, amount: int, currency: str = "USD", **fields: Any) -> Withdraw:
    result: Withdraw = make(Withdraw, account_id=account_id, amount=amount, currency=currency, **fields)
    return result


def transfer(source: str, destination: str, amount: int, currency: str = "USD", **fields: Any) -> Transfer:
    result: Transfer = make(
        Transfer, from_account_id=source, to_account_id=destination, amount=amount, currency=currency, **fields
    )
    return result


def hold(account_id: str, hold_id: str, amount: int, currency: str = "USD", ttl_ms: Any = TTL) -> PlaceHold:
    result: PlaceHold = make(
        PlaceHold, account_id=account_id, hold_id=hold_id, amount=amount, currency=currency, ttl_ms=ttl_ms
    )
    return result


def capture(account_id: str, hold_id: str, amount: int, destination: str, currency: str = "USD") -> CaptureHold:
    result: CaptureHold = make(
        CaptureHold,
        account_id=account_id,
        hold_id=hold_id,
        amount=amount,
        to_account_id=destination,
        currency=currency,
    )
    return result


def void(account_id: str, hold_id: str, **fields: Any) -> VoidHold:
    result: VoidHold = make(VoidHold, account_id=account_id, hold_id=hold_id, **fields)
    return result


def reverse(account_id: str, transfer_id: str) -> ReverseTransfer:
    result: ReverseTransfer = make(ReverseTransfer, account_id=account_id, transfer_id=transfer_id)
    return result


def batch(*legs: tuple[str, int] | tuple[str, int, str], batch_id: str | None = None, **fields: Any) -> Batch:
    built = [BatchLeg(account_id=leg[0], amount=leg[1], currency=leg[2] if len(leg) > 2 else "USD") for leg in legs]
    result: Batch = make(Batch, batch_id=batch_id or make_batch_id(0), legs=built, **fields)
    return result


def make_batch_id(shard: int) -> str:
    return f"{fresh('batch-')}@{shard}"


def lock(account_id: str, **fields: Any) -> LockAccount:
    result: LockAccount = make(LockAccount, account_id=account_id, **fields)
    return result


def unlock(account_id: str) -> UnlockAccount:
    result: UnlockAccount = make(UnlockAccount, account_id=account_id)
    return result


def close(account_id: str) -> CloseAccount:
    result: CloseAccount = make(CloseAccount, account_id=account_id)
    return result


def limits(account_id: str, lower: Any, upper: Any, currency: str = "USD") -> UpdateLimits:
    result: UpdateLimits = make(
        UpdateLimits, account_id=account_id, lower_limit=lower, upper_limit=upper, currency=currency
    )
    return result


def query(account_id: str, target: str) -> QueryCommand:
    result: QueryCommand = make(QueryCommand, account_id=account_id, target_command_id=target)
    return result


def forged_credit(**changes: Any) -> CreditLeg:
    """A CreditLeg no shard sent: A@0 -> X@1, 10 USD, as if debited at A's sequence 3."""
    leg = CreditLeg(
        transfer_id="forged",
        flow=Flow.TRANSFER,
        from_account_id="A@0",
        to_account_id="X@1",
        amount=10,
        currency="USD",
        command_id="forged",
        dedup_id="forged",
        command_type="Transfer",
        source_position=Position(account_id="A@0", sequence=3, balance=0, available=0),
        reversal_of=None,
        metadata={},
    )
    return dataclasses.replace(leg, **changes)


def same_dedup(command: Any, **changes: Any) -> Any:
    """A retry: another command id (unless given), the same dedup id, the payload changed as given."""
    changes.setdefault("command_id", fresh("retry-"))
    return dataclasses.replace(command, **changes)


def velocity(account_id: str, currency: str = "USD", **fields: Any) -> SetVelocityRules:
    result: SetVelocityRules = make(SetVelocityRules, account_id=account_id, currency=currency, **fields)
    return result


def usd(*accounts: str, **fields: Any) -> list[Step]:
    return [open_(account, **fields) for account in accounts]


# -- the table -------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Advance:
    """Time passes; every shard ticks unless `tick` is false."""

    ms: int
    tick: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Drain:
    """Deliver every leg (for rows that otherwise leave legs in flight)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Forge:
    """A leg no shard sent, delivered to `shard` (then every leg is delivered)."""

    shard: int
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class Expect:
    """A setup command that is rejected with `code`."""

    command: Command
    code: ErrorCode


Step = Command | Advance | Drain | Expect | Forge


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    name: str
    setup: list[Step]
    command: Command
    code: ErrorCode
    drain: bool = True  # deliver every leg after each setup step and after the command
    after_ms: int = 0  # time that passes (ticks) between submitting the command and draining
    compensated: bool = False  # rejected on another shard: debited, then refunded or released
    config: ShardConfig | None = None


def _full(entries_max: int) -> ShardConfig:
    """A shard that remembers at most `entries_max` entries (the rows fill it exactly)."""
    return ShardConfig(retained_entries_max=entries_max)


def _rows() -> list[Row]:
    rows: list[Row] = []

    def row(name: str, setup: Sequence[Step], command: Command, code: ErrorCode, **options: Any) -> None:
        rows.append(Row(name, list(setup), command, code, **options))

    base = usd("A@0", "B@0", "X@1", "Y@2")
    funded = [*base, deposit("A@0", 100)]

    # The message itself.
    row("empty command id", base, deposit("A@0", 1, command_id=""), E.MALFORMED)
    row("command id with a space", base, deposit("A@0", 1, command_id="a b"), E.MALFORMED)
    row("command id with the key separator", base, deposit("A@0", 1, command_id="a|b"), E.MALFORMED)
    row("command id too long", base, deposit("A@0", 1, command_id="c" * 65), E.MALFORMED)
    row("empty dedup id", base, deposit("A@0", 1, dedup_id=""), E.MALFORMED)
    row("dedup id too long", base, deposit("A@0", 1, dedup_id="d" * 129), E.MALFORMED)
    row("non-ASCII account id", base, deposit("Ä@0", 1), E.MALFORMED)
    row("account id too long", base, deposit("a" * 63 + "@0", 1), E.MALFORMED)
    row("17 metadata entries", base, deposit("A@0", 1, metadata={f"k{i}": "v" for i in range(17)}), E.MALFORMED)
    row("empty metadata key", base, deposit("A@0", 1, metadata={"": "v"}), E.MALFORMED)
    row("metadata value too long", base, deposit("A@0", 1, metadata={"k": "v" * 257}), E.MALFORMED)
    row("metadata value not text", base, deposit("A@0", 1, metadata={"k": 1}), E.MALFORMED)
    row("batch of one leg", base, batch(("A@0", 1)), E.MALFORMED)
    row(
        "batch of 17 legs",
        base,
        batch(*[(f"L{i}@0" if i else "A@0", 1 if i else -16) for i in range(17)]),
        E.MALFORMED,
    )
    row("batch leg account malformed", base, batch(("A@0", -1), ("B 0", 1)), E.MALFORMED)
    row("lock reason too long", base, lock("A@0", reason="r" * 257), E.MALFORMED)
    row("transfer to a malformed account", funded, transfer("A@0", "B|0", 1), E.MALFORMED)
    row("malformed parent", [], open_("P@0", parent_account_id="p a"), E.MALFORMED)
    row("query of a malformed command id", base, query("A@0", "no such"), E.MALFORMED)

    row("deposit of zero", base, deposit("A@0", 0), E.INVALID_AMOUNT)
    row("deposit of a negative amount", base, deposit("A@0", -5), E.INVALID_AMOUNT)
    row("withdrawal beyond 2^63-1", funded, withdraw("A@0", AMOUNT_MAX + 1), E.INVALID_AMOUNT)
    row("amount that is a bool", base, deposit("A@0", True), E.INVALID_AMOUNT)
    row("amount that is a float", base, deposit("A@0", 1.5), E.INVALID_AMOUNT)  # type: ignore[arg-type]
    row("amount that is a whole float", base, deposit("A@0", 2.0), E.INVALID_AMOUNT)  # type: ignore[arg-type]
    row("transfer of zero", funded, transfer("A@0", "B@0", 0), E.INVALID_AMOUNT)
    row("negative transfer (a pull)", funded, transfer("B@0", "A@0", -50), E.INVALID_AMOUNT)
    row("hold of zero", funded, hold("A@0", "h", 0), E.INVALID_AMOUNT)
    row("capture of zero", [*funded, hold("A@0", "h", 10)], capture("A@0", "h", 0, "B@0"), E.INVALID_AMOUNT)
    row("batch leg of zero", funded, batch(("A@0", 0), ("B@0", 0)), E.INVALID_AMOUNT)
    row("batch leg beyond 2^63-1", funded, batch(("A@0", -AMOUNT_MAX - 1), ("B@0", AMOUNT_MAX + 1)), E.INVALID_AMOUNT)

    row("lowercase currency", base, deposit("A@0", 1, "usd"), E.INVALID_CURRENCY)
    row("precious metal without minor unit", base, deposit("A@0", 1, "XAU"), E.INVALID_CURRENCY)
    row("empty currency", funded, transfer("A@0", "B@0", 1, ""), E.INVALID_CURRENCY)
    row("open in an unknown currency", [], open_("N@0", "EURO"), E.INVALID_CURRENCY)
    row("hold in an unknown currency", funded, hold("A@0", "h", 1, "JPYX"), E.INVALID_CURRENCY)
    row("batch leg in an unknown currency", funded, batch(("A@0", -1), ("B@0", 1, "ABC")), E.INVALID_CURRENCY)
    # A command written before CaptureHold and UpdateLimits carried a currency decodes to "".
    holding = [*funded, hold("A@0", "h", 10)]
    row("capture without a currency", holding, capture("A@0", "h", 5, "B@0", ""), E.INVALID_CURRENCY)
    row("capture in an unknown currency", holding, capture("A@0", "h", 5, "B@0", "usd"), E.INVALID_CURRENCY)
    row("limits without a currency", base, limits("A@0", 0, 5, ""), E.INVALID_CURRENCY)
    row("unknown currency beats invalid limits", base, limits("A@0", 1, 5, "XAU"), E.INVALID_CURRENCY)

    row("lower limit above zero", [], open_("N@0", lower_limit=1), E.INVALID_LIMITS)
    row("upper limit below zero", [], open_("N@0", upper_limit=-1), E.INVALID_LIMITS)
    row("lower limit beyond -(2^63-1)", [], open_("N@0", lower_limit=-AMOUNT_MAX - 1), E.INVALID_LIMITS)
    row("upper limit beyond 2^63-1", base, limits("A@0", 0, AMOUNT_MAX + 1), E.INVALID_LIMITS)
    row("limit that is a bool", base, limits("A@0", False, True), E.INVALID_LIMITS)
    row("upper limit below the balance", funded, limits("A@0", 0, 99), E.INVALID_LIMITS)
    row(
        "lower limit above an overdrawn balance",
        [open_("O@0", lower_limit=-100), withdraw("O@0", 80)],
        limits("O@0", -50, AMOUNT_MAX),
        E.INVALID_LIMITS,
    )
    row(
        "lower limit above what holds leave available",
        [open_("O@0", lower_limit=-100), hold("O@0", "h", 70)],
        limits("O@0", -50, AMOUNT_MAX),
        E.INVALID_LIMITS,
    )
    row(
        "upper limit below balance plus money in flight",
        [*funded, transfer("A@0", "X@1", 100)],
        limits("A@0", 0, 50),
        E.INVALID_LIMITS,
        drain=False,
    )

    row("hold ttl of zero", funded, hold("A@0", "h", 1, ttl_ms=0), E.INVALID_EXPIRY)
    row("negative hold ttl", funded, hold("A@0", "h", 1, ttl_ms=-1), E.INVALID_EXPIRY)
    row("hold ttl beyond 30 days", funded, hold("A@0", "h", 1, ttl_ms=HOLD_TTL_MS_MAX + 1), E.INVALID_EXPIRY)
    row("hold ttl that is a float", funded, hold("A@0", "h", 1, ttl_ms=1000.0), E.INVALID_EXPIRY)

    row("transfer to self", funded, transfer("A@0", "A@0", 1), E.SAME_ACCOUNT)
    row("capture into the held account", [*funded, hold("A@0", "h", 10)], capture("A@0", "h", 5, "A@0"), E.SAME_ACCOUNT)
    row("account its own parent", [], open_("N@0", parent_account_id="N@0"), E.SAME_ACCOUNT)

    row("an account in two currencies in a batch", funded, batch(("A@0", -5), ("A@0", 5, "JPY")), E.DUPLICATE_LEG)
    row(
        "an account in two currencies among four postings",
        [*funded, open_("J@0", "JPY")],
        batch(("A@0", -5), ("B@0", 5), ("A@0", -2, "JPY"), ("J@0", 2, "JPY")),
        E.DUPLICATE_LEG,
    )
    row("unbalanced batch", funded, batch(("A@0", -5), ("B@0", 4)), E.UNBALANCED_BATCH)
    row(
        "batch balanced only across currencies",
        [*funded, open_("J@0", "JPY")],
        batch(("A@0", -5), ("J@0", 5, "JPY")),
        E.UNBALANCED_BATCH,
    )

    # Idempotency.
    first: Any = deposit("A@0", 5)
    row("same dedup id, another amount", [*base, first], same_dedup(first, amount=6), E.DEDUP_CONFLICT)
    first = deposit("A@0", 5)
    row(
        "same dedup id, another command type",
        [*base, first],
        withdraw("A@0", 5, dedup_id=first.dedup_id),
        E.DEDUP_CONFLICT,
    )
    first = deposit("A@0", 5, metadata={"k": "v"})
    row("same dedup id, other metadata", [*base, first], same_dedup(first, metadata={"k": "w"}), E.DEDUP_CONFLICT)
    first = transfer("A@0", "B@0", 5)
    row("same dedup id, other destination", [*funded, first], same_dedup(first, to_account_id="X@1"), E.DEDUP_CONFLICT)
    first = batch(("A@0", -5), ("B@0", 5))
    row(
        "same batch legs in another order",
        [*funded, first],
        same_dedup(first, legs=list(reversed(first.legs))),
        E.DEDUP_CONFLICT,
    )
    first = transfer("A@0", "X@1", 5)
    row(
        "conflict while the first is in flight",
        [*funded, first],
        same_dedup(first, amount=6),
        E.DEDUP_CONFLICT,
        drain=False,
    )
    first = transfer("A@0", "X@1", 5)
    row(
        "more duplicates waiting than allowed",
        [*funded, first, *[same_dedup(first) for _ in range(DEDUP_WAITERS_MAX)]],
        same_dedup(first),
        E.DUPLICATE_BACKLOG,
        drain=False,
    )
    # Shard 0 remembers the openings of A and B (and the deposit, when funded): that many entries.
    row("a new command while the window is full", base, deposit("A@0", 1), E.DEDUP_WINDOW_FULL, config=_full(2))
    row("a transfer while the window is full", funded, transfer("A@0", "X@1", 5), E.DEDUP_WINDOW_FULL, config=_full(3))
    row(
        "a batch while its coordinator's window is full",
        funded,
        batch(("A@0", -5), ("X@1", 5), batch_id=make_batch_id(0)),
        E.DEDUP_WINDOW_FULL,
        config=_full(3),
    )
    row(
        "a query is answered while the window is full",
        base,
        query("A@0", "no-such"),
        E.COMMAND_NOT_FOUND,
        config=_full(2),
    )

    # Existence.
    row("deposit to an unknown account", base, deposit("Z@0", 1), E.ACCOUNT_NOT_FOUND)
    # A debit from an account that does not exist is not from the principal's own account: an
    # owner never learns whether another's account exists.
    row("withdraw from an unknown account", base, withdraw("Z@0", 1), E.FORBIDDEN)
    row("lock an unknown account", base, lock("Z@0"), E.ACCOUNT_NOT_FOUND)
    row("unlock an unknown account", base, unlock("Z@0"), E.ACCOUNT_NOT_FOUND)
    row("close an unknown account", base, close("Z@0"), E.ACCOUNT_NOT_FOUND)
    row("limits of an unknown account", base, limits("Z@0", 0, 5), E.ACCOUNT_NOT_FOUND)
    row("hold on an unknown account", base, hold("Z@0", "h", 1), E.FORBIDDEN)
    row("void on an unknown account", base, void("Z@0", "h"), E.FORBIDDEN)
    row("capture on an unknown account", base, capture("Z@0", "h", 1, "A@0"), E.FORBIDDEN)
    row("transfer from an unknown account", base, transfer("Z@0", "A@0", 1), E.FORBIDDEN)
    row("transfer to an unknown account here", funded, transfer("A@0", "Z@0", 1), E.ACCOUNT_NOT_FOUND)
    row(
        "transfer to an unknown account elsewhere",
        funded,
        transfer("A@0", "Z@1", 1),
        E.ACCOUNT_NOT_FOUND,
        compensated=True,
    )
    row(
        "capture into an unknown account elsewhere",
        [*funded, hold("A@0", "h", 10)],
        capture("A@0", "h", 10, "Z@2"),
        E.ACCOUNT_NOT_FOUND,
        compensated=True,
    )
    row("batch leg on an unknown account here", funded, batch(("A@0", -5), ("Z@0", 5)), E.ACCOUNT_NOT_FOUND)
    row(
        "batch leg on an unknown account elsewhere",
        funded,
        batch(("A@0", -5), ("Z@2", 5)),
        E.ACCOUNT_NOT_FOUND,
        compensated=True,
    )
    row("reversal on an unknown account", base, reverse("Z@0", "t"), E.ACCOUNT_NOT_FOUND)

    row("open twice", base, open_("A@0"), E.ACCOUNT_EXISTS)
    row("reopen a closed account", [*base, close("B@0")], open_("B@0", "JPY"), E.ACCOUNT_EXISTS)

    row("void an unknown hold", funded, void("A@0", "nope"), E.HOLD_NOT_FOUND)
    row("capture an unknown hold", funded, capture("A@0", "nope", 1, "B@0"), E.HOLD_NOT_FOUND)
    row(
        "hold ids are per account",
        [*funded, deposit("B@0", 10), hold("B@0", "h", 10)],
        void("A@0", "h"),
        E.HOLD_NOT_FOUND,
    )

    row("hold id used twice", [*funded, hold("A@0", "h", 10)], hold("A@0", "h", 10), E.HOLD_EXISTS)
    row(
        "hold id reused after a void",
        [*funded, hold("A@0", "h", 10), void("A@0", "h")],
        hold("A@0", "h", 10),
        E.HOLD_EXISTS,
    )
    row(
        "hold id reused after expiry",
        [*funded, hold("A@0", "h", 10, ttl_ms=100), Advance(200)],
        hold("A@0", "h", 10),
        E.HOLD_EXISTS,
    )

    row("reverse an unknown transfer", funded, reverse("B@0", "no-such-transfer"), E.TRANSFER_NOT_FOUND)
    sent = transfer("A@0", "B@0", 10)
    row("reversal sent to the sender", [*funded, sent], reverse("A@0", sent.command_id), E.TRANSFER_NOT_FOUND)
    sent = transfer("A@0", "X@1", 10)
    row("reversal sent to the sender (cross)", [*funded, sent], reverse("A@0", sent.command_id), E.TRANSFER_NOT_FOUND)
    taken = capture("A@0", "h", 10, "X@1")
    row(
        "reverse a capture",
        [*funded, hold("A@0", "h", 10), taken],
        reverse("X@1", taken.command_id),
        E.TRANSFER_NOT_FOUND,
    )
    taken = capture("A@0", "h", 10, "B@0")
    row(
        "reverse a local capture",
        [*funded, hold("A@0", "h", 10), taken],
        reverse("B@0", taken.command_id),
        E.TRANSFER_NOT_FOUND,
    )
    sent = transfer("A@0", "X@1", 10)
    back = reverse("X@1", sent.command_id)
    row("reverse a reversal", [*funded, sent, back], reverse("A@0", back.command_id), E.TRANSFER_NOT_FOUND)
    paid = deposit("A@0", 10)
    row("reverse a deposit", [*base, paid], reverse("A@0", paid.command_id), E.TRANSFER_NOT_FOUND)
    sent = transfer("A@0", "B@0", 10)
    row(
        "reverse after the retention window",
        [*funded, sent, Advance(2_000)],
        reverse("B@0", sent.command_id),
        E.TRANSFER_NOT_FOUND,
        config=ShardConfig(retention_ms=1_000),
    )

    row("query an unknown command", base, query("A@0", "no-such-command"), E.COMMAND_NOT_FOUND)
    bad = deposit("A@0", 1, dedup_id="")
    row(
        "query a command rejected as malformed",
        [*base, Expect(bad, E.MALFORMED)],
        query("A@0", bad.command_id),
        E.COMMAND_NOT_FOUND,
    )
    paid = deposit("A@0", 10)
    row(
        "query after the retention window",
        [*base, paid, Advance(2_000)],
        query("A@0", paid.command_id),
        E.COMMAND_NOT_FOUND,
        config=ShardConfig(retention_ms=1_000),
    )
    paid = deposit("A@0", 10)
    row("query through another shard's account", [*base, paid], query("X@1", paid.command_id), E.COMMAND_NOT_FOUND)
    paid = deposit("A@0", 10)
    row("query through another account", [*base, paid], query("B@0", paid.command_id), E.COMMAND_NOT_FOUND)

    # Status.
    closed = [*base, close("B@0")]
    row("deposit to a closed account", closed, deposit("B@0", 1), E.ACCOUNT_CLOSED)
    row("withdraw from a closed account", closed, withdraw("B@0", 1), E.ACCOUNT_CLOSED)
    row("lock a closed account", closed, lock("B@0"), E.ACCOUNT_CLOSED)
    row("unlock a closed account", closed, unlock("B@0"), E.ACCOUNT_CLOSED)
    row("close twice", closed, close("B@0"), E.ACCOUNT_CLOSED)
    row("limits of a closed account", closed, limits("B@0", 0, 10), E.ACCOUNT_CLOSED)
    row("hold on a closed account", closed, hold("B@0", "h", 1), E.ACCOUNT_CLOSED)
    row("transfer from a closed account", closed, transfer("B@0", "A@0", 1), E.ACCOUNT_CLOSED)
    row("transfer to a closed account here", [*closed, deposit("A@0", 5)], transfer("A@0", "B@0", 1), E.ACCOUNT_CLOSED)
    row(
        "transfer to a closed account elsewhere",
        [*funded, close("X@1")],
        transfer("A@0", "X@1", 1),
        E.ACCOUNT_CLOSED,
        compensated=True,
    )
    row("batch leg on a closed account", [*closed, deposit("A@0", 5)], batch(("A@0", -1), ("B@0", 1)), E.ACCOUNT_CLOSED)

    locked = [*funded, deposit("B@0", 50), lock("B@0")]
    row("deposit to a locked account", locked, deposit("B@0", 1), E.ACCOUNT_LOCKED)
    row("withdraw from a locked account", locked, withdraw("B@0", 1), E.ACCOUNT_LOCKED)
    row("transfer from a locked account", locked, transfer("B@0", "A@0", 1), E.ACCOUNT_LOCKED)
    row("transfer to a locked account here", locked, transfer("A@0", "B@0", 1), E.ACCOUNT_LOCKED)
    row(
        "transfer to a locked account elsewhere",
        [*funded, lock("X@1")],
        transfer("A@0", "X@1", 1),
        E.ACCOUNT_LOCKED,
        compensated=True,
    )
    row("hold on a locked account", locked, hold("B@0", "h", 1), E.ACCOUNT_LOCKED)
    row(
        "capture from a locked account",
        [*funded, hold("A@0", "h", 10), lock("A@0")],
        capture("A@0", "h", 10, "B@0"),
        E.ACCOUNT_LOCKED,
    )
    row("lock twice", locked, lock("B@0"), E.ACCOUNT_LOCKED)
    row(
        "batch leg on a locked account elsewhere",
        [*funded, lock("Y@2")],
        batch(("A@0", -5), ("Y@2", 5)),
        E.ACCOUNT_LOCKED,
        compensated=True,
    )
    sent = transfer("A@0", "B@0", 10)
    row(
        "reversal from a locked account",
        [*funded, sent, lock("B@0")],
        reverse("B@0", sent.command_id),
        E.ACCOUNT_LOCKED,
    )
    sent = transfer("A@0", "X@1", 10)
    row(
        "reversal into a locked sender",
        [*funded, sent, lock("A@0")],
        reverse("X@1", sent.command_id),
        E.ACCOUNT_LOCKED,
        compensated=True,
    )
    row("unlock an active account", base, unlock("A@0"), E.ACCOUNT_NOT_LOCKED)

    jpy = [*funded, open_("J@0", "JPY"), open_("JX@1", "JPY"), deposit("J@0", 100, "JPY")]
    row("deposit in another currency", jpy, deposit("A@0", 1, "JPY"), E.CURRENCY_MISMATCH)
    row("withdraw in another currency", jpy, withdraw("A@0", 1, "JPY"), E.CURRENCY_MISMATCH)
    row("transfer in the wrong currency", jpy, transfer("A@0", "B@0", 1, "JPY"), E.CURRENCY_MISMATCH)
    row("transfer into another currency here", jpy, transfer("A@0", "J@0", 1), E.CURRENCY_MISMATCH)
    row(
        "transfer into another currency elsewhere",
        jpy,
        transfer("J@0", "X@1", 1, "JPY"),
        E.CURRENCY_MISMATCH,
        compensated=True,
    )
    row("hold in another currency", jpy, hold("A@0", "h", 1, "JPY"), E.CURRENCY_MISMATCH)
    row(
        "capture into another currency",
        [*jpy, hold("A@0", "h", 10)],
        capture("A@0", "h", 10, "JX@1"),
        E.CURRENCY_MISMATCH,
        compensated=True,
    )
    row("batch leg in another currency", jpy, batch(("A@0", -1, "JPY"), ("J@0", 1, "JPY")), E.CURRENCY_MISMATCH)
    yen_hold = [*jpy, hold("J@0", "h", 10, "JPY")]
    row("capture priced in another currency", yen_hold, capture("J@0", "h", 5, "B@0", "USD"), E.CURRENCY_MISMATCH)
    row("limits priced in another currency", jpy, limits("J@0", 0, 10_000, "USD"), E.CURRENCY_MISMATCH)
    row("limits of a locked account", [*jpy, lock("J@0")], limits("J@0", 0, 10_000, "USD"), E.CURRENCY_MISMATCH)

    # State of the thing acted upon.
    expiring = [*funded, hold("A@0", "h", 10, ttl_ms=1_000)]
    row("void an expired hold", [*expiring, Advance(1_000)], void("A@0", "h"), E.HOLD_EXPIRED)
    row("capture an expired hold", [*expiring, Advance(5_000)], capture("A@0", "h", 5, "B@0"), E.HOLD_EXPIRED)
    # Past the expiry before any tick, the command itself releases the hold first (a change,
    # so not a row here): test_time_and_retention.py::test_a_capture_or_void_past_expiry_…

    finalized = [*funded, hold("A@0", "h", 10)]
    row("void twice", [*finalized, void("A@0", "h")], void("A@0", "h"), E.HOLD_ALREADY_FINALIZED)
    row(
        "capture a voided hold", [*finalized, void("A@0", "h")], capture("A@0", "h", 5, "B@0"), E.HOLD_ALREADY_FINALIZED
    )
    row(
        "capture after a partial capture",
        [*finalized, capture("A@0", "h", 4, "B@0")],
        capture("A@0", "h", 4, "B@0"),
        E.HOLD_ALREADY_FINALIZED,
    )
    row(
        "void a captured hold", [*finalized, capture("A@0", "h", 10, "X@1")], void("A@0", "h"), E.HOLD_ALREADY_FINALIZED
    )
    row(
        "void while a capture is in flight",
        [*finalized, capture("A@0", "h", 10, "X@1")],
        void("A@0", "h"),
        E.HOLD_ALREADY_FINALIZED,
        drain=False,
    )

    sent = transfer("A@0", "B@0", 10)
    row(
        "reverse twice",
        [*funded, sent, reverse("B@0", sent.command_id)],
        reverse("B@0", sent.command_id),
        E.ALREADY_REVERSED,
    )
    sent = transfer("A@0", "X@1", 10)
    row(
        "reverse twice (cross)",
        [*funded, sent, reverse("X@1", sent.command_id)],
        reverse("X@1", sent.command_id),
        E.ALREADY_REVERSED,
    )
    sent = transfer("A@0", "X@1", 10)
    row(
        "reverse while the first reversal is in flight",
        [*funded, sent, Drain(), reverse("X@1", sent.command_id)],
        reverse("X@1", sent.command_id),
        E.ALREADY_REVERSED,
        drain=False,
    )

    row("close with a balance", funded, close("A@0"), E.BALANCE_NOT_ZERO)
    row("close overdrawn", [open_("O@0", lower_limit=-10), withdraw("O@0", 5)], close("O@0"), E.BALANCE_NOT_ZERO)
    row(
        "close with an open hold",
        [open_("O@0", lower_limit=-10), hold("O@0", "h", 5)],
        close("O@0"),
        E.BALANCE_NOT_ZERO,
    )
    row(
        "close with money in flight",
        [*funded, transfer("A@0", "X@1", 100)],
        close("A@0"),
        E.BALANCE_NOT_ZERO,
        drain=False,
    )

    # Funds and limits.
    row("withdraw more than the balance", funded, withdraw("A@0", 101), E.INSUFFICIENT_FUNDS)
    row("withdraw what a hold reserves", [*funded, hold("A@0", "h", 30)], withdraw("A@0", 71), E.INSUFFICIENT_FUNDS)
    row(
        "overdraw beyond the lower limit",
        [open_("O@0", lower_limit=-50), withdraw("O@0", 50)],
        withdraw("O@0", 1),
        E.INSUFFICIENT_FUNDS,
    )
    row("transfer more than available", funded, transfer("A@0", "X@1", 101), E.INSUFFICIENT_FUNDS)
    row("hold more than available", funded, hold("A@0", "h", 101), E.INSUFFICIENT_FUNDS)
    row("batch debit more than available", funded, batch(("A@0", -101), ("B@0", 101)), E.INSUFFICIENT_FUNDS)
    row("velocity limits below zero", base, velocity("A@0", hour_amount_max=-1), E.INVALID_LIMITS)
    row(
        "velocity limits in an unknown currency",
        base,
        velocity("A@0", day_count_max=1, currency="usd"),
        E.INVALID_CURRENCY,
    )
    row("velocity rules of an unknown account", base, velocity("Z@0", day_count_max=1), E.ACCOUNT_NOT_FOUND)
    row("velocity rules of a closed account", [*base, close("B@0")], velocity("B@0", day_count_max=1), E.ACCOUNT_CLOSED)
    row(
        "velocity rules in another currency",
        base,
        velocity("A@0", day_count_max=1, currency="JPY"),
        E.CURRENCY_MISMATCH,
    )
    paced = [*funded, velocity("A@0", hour_amount_max=50, day_count_max=2), withdraw("A@0", 30)]
    row("withdraw past the hour's amount", paced, withdraw("A@0", 21), E.VELOCITY_LIMIT_EXCEEDED)
    row("transfer past the hour's amount", paced, transfer("A@0", "X@1", 21), E.VELOCITY_LIMIT_EXCEEDED)
    row(
        "transfer past the day's count",
        [*paced, transfer("A@0", "B@0", 1)],
        transfer("A@0", "X@1", 1),
        E.VELOCITY_LIMIT_EXCEEDED,
    )
    row("insufficient funds beats velocity", paced, withdraw("A@0", 101), E.INSUFFICIENT_FUNDS)
    row("locked beats velocity", [*paced, lock("A@0")], withdraw("A@0", 21), E.ACCOUNT_LOCKED)
    row(
        "a payment and its fee from one account, more than available",
        funded,
        batch(("A@0", -95), ("B@0", 95), ("A@0", -6), ("X@1", 6), batch_id=make_batch_id(2)),
        E.INSUFFICIENT_FUNDS,
        compensated=True,
    )
    row(
        "a posting that overdraws before a later credit to the same account",
        funded,
        batch(("A@0", -150), ("A@0", 100), ("B@0", 50)),
        E.INSUFFICIENT_FUNDS,
    )
    row(
        "a posting that overdraws before a later credit, elsewhere",
        funded,
        batch(("A@0", -150), ("A@0", 100), ("Y@2", 50), batch_id=make_batch_id(1)),
        E.INSUFFICIENT_FUNDS,
        compensated=True,
    )
    row(
        "batch debit more than available elsewhere",
        funded,
        batch(("A@0", -101), ("Y@2", 101), batch_id=make_batch_id(2)),
        E.INSUFFICIENT_FUNDS,
        compensated=True,
    )
    sent = transfer("A@0", "B@0", 10)
    row(
        "reversal after the money was spent",
        [*funded, sent, withdraw("B@0", 5)],
        reverse("B@0", sent.command_id),
        E.INSUFFICIENT_FUNDS,
    )

    capped = [*funded, open_("C@0", upper_limit=50), open_("CX@1", upper_limit=50)]
    row("deposit beyond the upper limit", capped, deposit("C@0", 51), E.LIMIT_EXCEEDED)
    row("transfer beyond the upper limit here", capped, transfer("A@0", "C@0", 51), E.LIMIT_EXCEEDED)
    row(
        "transfer beyond the upper limit elsewhere",
        capped,
        transfer("A@0", "CX@1", 51),
        E.LIMIT_EXCEEDED,
        compensated=True,
    )
    row("batch credit beyond the upper limit", capped, batch(("A@0", -51), ("C@0", 51)), E.LIMIT_EXCEEDED)
    row(
        "postings that rise above the upper limit before they come back",
        capped,
        batch(("A@0", -60), ("CX@1", 60), ("CX@1", -60), ("B@0", 60), batch_id=make_batch_id(2)),
        E.LIMIT_EXCEEDED,
        compensated=True,
    )
    row(
        "capture beyond the upper limit",
        [*capped, hold("A@0", "h", 60)],
        capture("A@0", "h", 60, "C@0"),
        E.LIMIT_EXCEEDED,
    )
    row(
        "money in flight counts against the upper limit",
        [open_("C@0", upper_limit=100), deposit("C@0", 100), transfer("C@0", "X@1", 100)],
        deposit("C@0", 1),
        E.LIMIT_EXCEEDED,
        drain=False,
    )

    row(
        "capture more than the hold",
        [*funded, hold("A@0", "h", 10)],
        capture("A@0", "h", 11, "B@0"),
        E.CAPTURE_EXCEEDS_HOLD,
    )
    row(
        "capture more than the hold (cross)",
        [*funded, hold("A@0", "h", 10)],
        capture("A@0", "h", 11, "X@1"),
        E.CAPTURE_EXCEEDS_HOLD,
    )

    # Ids chosen by clients and reused.
    in_flight_batch = make_batch_id(0)
    row(
        "batch id reused while the batch is in flight",
        [*funded, batch(("A@0", -10), ("X@1", 10), batch_id=in_flight_batch)],
        batch(("A@0", -20), ("X@1", 20), batch_id=in_flight_batch),
        E.ID_IN_USE,
        drain=False,
    )

    # Protocol.
    row(
        "participants never voted in time",
        funded,
        batch(("A@0", -10), ("X@1", 10), batch_id=make_batch_id(2)),
        E.BATCH_TIMEOUT,
        after_ms=31_000,
        compensated=True,
    )

    # Precedence: wrong in two ways, the earlier code wins.
    row("malformed id beats zero amount", base, deposit("A@0", 0, command_id="a b"), E.MALFORMED)
    row("malformed metadata beats zero amount", base, deposit("A@0", 0, metadata={"": ""}), E.MALFORMED)
    row("zero amount beats unknown currency", base, deposit("A@0", 0, "usd"), E.INVALID_AMOUNT)
    row("zero amount beats unknown account", base, deposit("Z@0", 0), E.INVALID_AMOUNT)
    row("unknown currency beats self transfer", funded, transfer("A@0", "A@0", 1, "usd"), E.INVALID_CURRENCY)
    row(
        "leg amount beats an earlier leg's currency",
        funded,
        batch(("A@0", -1, "usd"), ("B@0", 0)),
        E.INVALID_AMOUNT,
    )
    row("limits beat own parent", [], open_("N@0", parent_account_id="N@0", lower_limit=1), E.INVALID_LIMITS)
    row("expiry beats unknown account", base, hold("A@0", "h", 1, ttl_ms=0), E.INVALID_EXPIRY)
    row("forbidden beats expiry", base, hold("Z@0", "h", 1, ttl_ms=0), E.FORBIDDEN)
    row("duplicate leg beats unbalanced", funded, batch(("A@0", -5), ("A@0", 4, "JPY")), E.DUPLICATE_LEG)
    row(
        "an earlier leg's funds do not beat a later leg's locked account",
        [*funded, lock("B@0")],
        batch(("A@0", -101), ("B@0", 101)),
        E.ACCOUNT_LOCKED,
    )
    row(
        "a later leg's unknown account beats an earlier leg's funds, elsewhere",
        funded,
        batch(("A@0", -101), ("Z@2", 101), batch_id=make_batch_id(1)),
        E.ACCOUNT_NOT_FOUND,
    )
    first = deposit("A@0", 5)
    row(
        "dedup conflict beats a full window",
        [*base, first],
        same_dedup(first, amount=6),
        E.DEDUP_CONFLICT,
        config=_full(3),
    )
    row("a full window beats zero amount", base, deposit("A@0", 0), E.DEDUP_WINDOW_FULL, config=_full(2))
    row("a full window beats unknown account", base, deposit("Z@0", 1), E.DEDUP_WINDOW_FULL, config=_full(2))
    first = deposit("B@0", 5)
    row(
        "dedup conflict beats locked",
        [*base, first, lock("B@0")],
        same_dedup(first, amount=6),
        E.DEDUP_CONFLICT,
    )
    row("forbidden (an unknown account) beats unknown hold", base, void("Z@0", "h"), E.FORBIDDEN)
    row("hold exists beats locked", [*funded, hold("A@0", "h", 5), lock("A@0")], hold("A@0", "h", 5), E.HOLD_EXISTS)
    row("unknown hold beats locked", [*funded, lock("A@0")], capture("A@0", "h", 5, "B@0"), E.HOLD_NOT_FOUND)
    row("closed beats currency", [*base, close("B@0")], deposit("B@0", 1, "JPY"), E.ACCOUNT_CLOSED)
    row("locked beats currency", locked, deposit("B@0", 1, "JPY"), E.ACCOUNT_LOCKED)
    row("locked beats insufficient funds", locked, withdraw("B@0", 1_000), E.ACCOUNT_LOCKED)
    row("closed beats not locked", [*base, close("B@0")], unlock("B@0"), E.ACCOUNT_CLOSED)
    row("currency beats limit", [*base, open_("C@0", upper_limit=5)], deposit("C@0", 6, "EUR"), E.CURRENCY_MISMATCH)
    row("currency beats funds", funded, withdraw("A@0", 1_000, "EUR"), E.CURRENCY_MISMATCH)
    row("closed beats currency of limits", [*base, close("B@0")], limits("B@0", 0, 10, "JPY"), E.ACCOUNT_CLOSED)
    row("currency beats limits below the balance", funded, limits("A@0", 0, 50, "JPY"), E.CURRENCY_MISMATCH)
    row(
        "locked beats currency of a capture",
        [*funded, hold("A@0", "h", 5), lock("A@0")],
        capture("A@0", "h", 5, "B@0", "JPY"),
        E.ACCOUNT_LOCKED,
    )
    row(
        "currency beats expired",
        [*funded, hold("A@0", "h", 5, ttl_ms=100), Advance(200)],
        capture("A@0", "h", 5, "B@0", "JPY"),
        E.CURRENCY_MISMATCH,
    )
    row(
        "currency beats capture too large",
        [*funded, hold("A@0", "h", 5)],
        capture("A@0", "h", 6, "B@0", "JPY"),
        E.CURRENCY_MISMATCH,
    )
    # A forged credit from A (sequence 10**6, to an account that does not exist) marks A's
    # credits on shard 1 as decided up to there: A's next real credit to shard 1 is refused
    # as a replay and refunded (the forged leg's own refund is refused at A: no such flow).
    forged = forged_credit(
        transfer_id="forged-1",
        command_id="forged-1",
        to_account_id="Z@1",
        source_position=Position(account_id="A@0", sequence=10**6, balance=0, available=0),
    )
    row(
        "a credit behind a forged one from its source",
        [*funded, Forge(1, forged)],
        transfer("A@0", "X@1", 5),
        E.CREDIT_OUT_OF_ORDER,
        compensated=True,
    )
    # Who may do what (ledger/authorization.py; the full matrix: test_authorization.py).
    row("an anonymous (v1) deposit", base, deposit("A@0", 1, principal=ANONYMOUS), E.FORBIDDEN)
    row("forbidden beats malformed", base, deposit("A@0", 0, principal=ANONYMOUS), E.FORBIDDEN)
    row(
        "a withdrawal from another owner's account",
        [*base, open_("M@0", owner="mallory"), deposit("M@0", 100)],
        withdraw("M@0", 1),
        E.FORBIDDEN,
    )
    row(
        "a batch debiting another owner's account on another shard",
        [*base, open_("M@1", owner="mallory"), deposit("M@1", 100)],
        batch(("M@1", -5), ("A@0", 5)),
        E.FORBIDDEN,
        compensated=True,  # refused at M@1's prepare: A@0's reserved credit is released
    )
    row(
        "locked beats expired",
        [*funded, hold("A@0", "h", 5, ttl_ms=100), lock("A@0"), Advance(200)],
        capture("A@0", "h", 5, "B@0"),
        E.ACCOUNT_LOCKED,
    )
    row(
        "expired beats capture too large",
        [*funded, hold("A@0", "h", 5, ttl_ms=100), Advance(200)],
        capture("A@0", "h", 6, "B@0"),
        E.HOLD_EXPIRED,
    )
    row(
        "finalized beats capture too large",
        [*funded, hold("A@0", "h", 5), void("A@0", "h")],
        capture("A@0", "h", 6, "B@0"),
        E.HOLD_ALREADY_FINALIZED,
    )
    sent = transfer("A@0", "B@0", 10)
    row(
        "locked beats already reversed",
        [*funded, sent, reverse("B@0", sent.command_id), lock("B@0")],
        reverse("B@0", sent.command_id),
        E.ACCOUNT_LOCKED,
    )
    row("unknown transfer beats locked", locked, reverse("B@0", "no-such"), E.TRANSFER_NOT_FOUND)
    sent = transfer("A@0", "B@0", 10)
    row(
        "already reversed beats insufficient funds",
        [*funded, sent, reverse("B@0", sent.command_id)],  # B has nothing left to send back
        reverse("B@0", sent.command_id),
        E.ALREADY_REVERSED,
    )
    row("a lock does not stop a close", [*locked], close("B@0"), E.BALANCE_NOT_ZERO)
    return rows


ROWS = _rows()


def test_every_code_has_a_row() -> None:
    """Every ErrorCode the shard can produce is exercised by the table."""
    assert {row.code for row in ROWS} == set(ErrorCode)


def test_codes_added_after_v1_read_as_unknown_with_a_v1_reader() -> None:
    """Rejections with a new code still reach clients built on the released schemas."""
    released = load_folder(SCHEMA_ROOT / RELEASED_DIR / "v1", "v1")["streamwallet.result.CommandResult"]
    known = set(next(f for f in released.expanded["fields"] if f["name"] == "code")["type"][1]["symbols"])
    added = [code for code in ErrorCode if code.name not in known]
    assert E.DEDUP_WINDOW_FULL in added and list(ErrorCode)[-len(added) :] == added  # appended, never inserted
    codec = Codec()
    accepted = Cluster(1).run(open_("A@0"))
    for code in added:
        result = dataclasses.replace(accepted, status=ResultStatus.REJECTED, code=code, message="refused")
        body = io.BytesIO(codec.encode(result)[10:])  # after the marker and the fingerprint
        written_with = codec.schema(CommandResult).parsed_plain
        read = fastavro.schemaless_reader(body, written_with, released.parsed_plain)
        assert isinstance(read, dict) and read["code"] == "UNKNOWN", (code, read)


def _snapshot(cluster: Cluster, *, compensated: bool) -> Any:
    tables = (
        Table.HOLDS,
        Table.OUTGOING,
        Table.TRANSFERS,
        Table.PREPARED,
        Table.BATCHES,
        Table.HOLD_EXPIRIES,
        Table.BATCH_DEADLINES,
    )
    accounts = [
        dataclasses.replace(account, sequence=0, updated_at_ms=0, last_hash="") if compensated else account
        for account in cluster.accounts()
    ]
    return accounts, {table: cluster.rows(table) for table in tables}, cluster.in_flight()


def _run_step(cluster: Cluster, step: Step, row: Row) -> None:
    if isinstance(step, Advance):
        cluster.advance(step.ms, tick=step.tick)
    elif isinstance(step, Drain):
        cluster.drain()
    elif isinstance(step, Forge):
        cluster.handle(step.shard, step.leg, cluster.now)
        cluster.drain()
    elif isinstance(step, Expect):
        assert cluster.run(step.command).code is step.code
    else:
        cluster.submit(step)
        if row.drain:
            cluster.drain()
        results = cluster.results_for(step.command_id)
        assert len(results) == 1 or (not row.drain and not results), f"setup {step} has results {results}"
        assert all(result.status is ResultStatus.ACCEPTED for result in results), f"setup rejected: {results}"
    if row.drain:
        cluster.drain()


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_rejection(row: Row) -> None:
    cluster = Cluster(3, config=row.config)
    for step in row.setup:
        _run_step(cluster, step, row)
    before = _snapshot(cluster, compensated=row.compensated)
    events_before = len(cluster.events)

    cluster.submit(row.command)
    if row.after_ms:
        cluster.advance(row.after_ms)
    if row.drain:
        cluster.drain()

    result = cluster.result(row.command.command_id)
    assert (result.status, result.code) == (ResultStatus.REJECTED, row.code), result
    assert not result.replayed and result.command_id == row.command.command_id
    assert result.command_type == type(row.command).__name__
    assert result.message
    assert _snapshot(cluster, compensated=row.compensated) == before, "a rejection changed state"
    new_events = cluster.events[events_before:]
    if row.compensated:
        assert new_events, "a cross-shard rejection is a debit and its compensation"
        assert all(event.command_id == row.command.command_id for event in new_events)
    else:
        assert new_events == [], f"a rejection emitted events: {new_events}"

    cluster.drain()
    check_state(cluster)
    check_quiescent(cluster)
    check_one_result_each(cluster, settled=True)


# -- scenarios ---------------------------------------------------------------------------------------------------------


def accept_all(cluster: Cluster, *commands: Command) -> None:
    for command in commands:
        result = cluster.run(command)
        assert result.status is ResultStatus.ACCEPTED, result


def test_hold_expires_while_a_cross_shard_capture_is_in_flight() -> None:
    """The capture is refused on the other shard after the hold's expiry: the hold ends
    EXPIRED and everything it reserved is available again."""
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100), hold("A@0", "h", 100, ttl_ms=1_000))
    accept_all(cluster, lock("X@1"))
    taken = capture("A@0", "h", 60, "X@1")
    cluster.submit(taken)
    assert cluster.hold_status("A@0", "h") == "CAPTURING"
    account = cluster.account("A@0")
    assert account is not None and (account.balance, account.held, account.pending_out) == (40, 40, 60)

    cluster.advance(5_000)  # past expiry: the tick leaves a CAPTURING hold to its capture
    assert cluster.hold_status("A@0", "h") == "CAPTURING"
    assert not any(event.kind is EventKind.HOLD_EXPIRED for event in cluster.events)
    assert cluster.results_for(taken.command_id) == []

    cluster.deliver(1)  # the credit is refused: X is locked
    assert isinstance(cluster.queues[0][0].leg, RefundLeg)
    cluster.deliver(0)  # the refund, with the shard-1 timestamp, on a shard whose clock is later
    result = cluster.result(taken.command_id)
    assert (result.status, result.code) == (ResultStatus.REJECTED, E.ACCOUNT_LOCKED)
    assert cluster.hold_status("A@0", "h") == "EXPIRED"
    account = cluster.account("A@0")
    assert account is not None and (account.balance, account.held, account.pending_out, account.available) == (
        100,
        0,
        0,
        100,
    )
    refund = cluster.events[-1]
    assert (refund.kind, refund.amount, refund.held_change) == (EventKind.CAPTURE_REFUNDED, 60, -40)
    for late in (void("A@0", "h"), capture("A@0", "h", 10, "B@0")):
        assert cluster.run(late).code is E.HOLD_EXPIRED
    assert cluster.run(withdraw("A@0", 100)).status is ResultStatus.ACCEPTED
    check_state(cluster, {"USD": 0})
    check_quiescent(cluster)


def test_refused_capture_before_expiry_reopens_the_hold() -> None:
    cluster = Cluster(3)
    accept_all(
        cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100), hold("A@0", "h", 100, ttl_ms=10_000), lock("X@1")
    )
    result = cluster.run(capture("A@0", "h", 60, "X@1"))
    assert result.code is E.ACCOUNT_LOCKED
    assert cluster.hold_status("A@0", "h") == "OPEN"
    account = cluster.account("A@0")
    assert account is not None and (account.balance, account.held) == (100, 100)
    cluster.advance(10_000)  # and it still expires on time
    assert cluster.hold_status("A@0", "h") == "EXPIRED"
    assert cluster.events[-1].kind is EventKind.HOLD_EXPIRED and cluster.events[-1].held_change == -100
    check_state(cluster, {"USD": 100})


def test_capture_settled_after_expiry_still_captures() -> None:
    """Expiry does not undo a capture that the other shard accepted."""
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100), hold("A@0", "h", 100, ttl_ms=1_000))
    taken = capture("A@0", "h", 60, "X@1")
    cluster.submit(taken)
    cluster.advance(5_000)
    cluster.drain()
    assert cluster.result(taken.command_id).status is ResultStatus.ACCEPTED
    assert cluster.hold_status("A@0", "h") == "CAPTURED"
    source, destination = cluster.account("A@0"), cluster.account("X@1")
    assert source is not None and destination is not None
    assert (source.balance, source.held, destination.balance) == (40, 0, 60)
    check_state(cluster, {"USD": 100})
    check_quiescent(cluster)


def test_locked_account() -> None:
    """Locked: no new balance operations; voids, reads and in-flight completions go on."""
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0"), open_("X@1"), open_("Y@2"), deposit("A@0", 100), deposit("X@1", 100))
    accept_all(cluster, hold("A@0", "h", 10), hold("A@0", "g", 10), lock("Y@2"))
    outgoing = transfer("A@0", "X@1", 5)  # in flight when A is locked: it settles
    refused = transfer("A@0", "Y@2", 5)  # refused by Y: the refund reaches the locked A
    prepared = batch(("X@1", -7), ("A@0", 7), batch_id=make_batch_id(2))
    cluster.submit(outgoing)
    cluster.submit(refused)
    cluster.submit(prepared)
    assert isinstance(cluster.queues[0][0].leg, BatchPrepare)
    cluster.deliver(0)  # A prepares its credit leg before the lock
    locked = lock("A@0")
    cluster.submit(locked)
    assert cluster.result(locked.command_id).status is ResultStatus.ACCEPTED
    cluster.drain()
    assert cluster.result(outgoing.command_id).status is ResultStatus.ACCEPTED
    assert cluster.result(refused.command_id).code is E.ACCOUNT_LOCKED
    assert cluster.result(prepared.command_id).status is ResultStatus.ACCEPTED
    account = cluster.account("A@0")
    assert account is not None and account.status == "LOCKED"
    assert (account.balance, account.held, account.pending_out) == (100 - 5 + 7, 20, 0)

    assert cluster.run(deposit("A@0", 1)).code is E.ACCOUNT_LOCKED
    assert cluster.run(withdraw("A@0", 1)).code is E.ACCOUNT_LOCKED
    assert cluster.run(transfer("X@1", "A@0", 1)).code is E.ACCOUNT_LOCKED
    assert cluster.run(capture("A@0", "g", 1, "X@1")).code is E.ACCOUNT_LOCKED
    assert cluster.run(void("A@0", "h")).status is ResultStatus.ACCEPTED
    found = cluster.run(query("A@0", outgoing.command_id))
    assert found.status is ResultStatus.ACCEPTED and found.queried is not None
    assert found.queried.status is ResultStatus.ACCEPTED
    assert cluster.run(limits("A@0", 0, 1_000)).status is ResultStatus.ACCEPTED
    cluster.advance(TTL)  # the other hold expires on a locked account too
    assert cluster.hold_status("A@0", "g") == "EXPIRED"
    assert cluster.run(unlock("A@0")).status is ResultStatus.ACCEPTED
    assert cluster.run(deposit("A@0", 1)).status is ResultStatus.ACCEPTED
    check_state(cluster, {"USD": 201})
    check_quiescent(cluster)
    check_one_result_each(cluster, settled=True)


def test_limits_may_move_exactly_to_the_balance() -> None:
    cluster = Cluster(1)
    accept_all(cluster, open_("O@0", lower_limit=-100), withdraw("O@0", 30), hold("O@0", "h", 20))
    assert cluster.run(limits("O@0", -49, 0)).code is E.INVALID_LIMITS
    assert cluster.run(limits("O@0", -50, 0)).status is ResultStatus.ACCEPTED
    assert cluster.run(withdraw("O@0", 1)).code is E.INSUFFICIENT_FUNDS
    assert cluster.run(deposit("O@0", 31)).code is E.LIMIT_EXCEEDED
    assert cluster.run(deposit("O@0", 30)).status is ResultStatus.ACCEPTED
    check_state(cluster, {"USD": 0})


# -- idempotency -------------------------------------------------------------------------------------------------------


def test_a_duplicate_replays_the_original_result() -> None:
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0"), open_("B@0"), open_("X@1"), deposit("A@0", 100))
    for original in (withdraw("A@0", 10), transfer("A@0", "B@0", 10), transfer("A@0", "X@1", 10), withdraw("A@0", 500)):
        first = cluster.run(original)
        events = len(cluster.events)
        for _ in range(2):
            again = cluster.run(same_dedup(original))
            assert again.replayed and again.original_command_id == original.command_id
            assert dataclasses.replace(again, command_id=first.command_id, replayed=False) == first
        assert len(cluster.events) == events, "a duplicate changed an account"
    check_state(cluster, {"USD": 90})


def test_a_rejection_is_replayed_even_when_it_would_now_succeed() -> None:
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"))
    original = withdraw("A@0", 10)
    assert cluster.run(original).code is E.INSUFFICIENT_FUNDS
    accept_all(cluster, deposit("A@0", 100))
    again = cluster.run(same_dedup(original))
    assert again.replayed and again.code is E.INSUFFICIENT_FUNDS
    account = cluster.account("A@0")
    assert account is not None and account.balance == 100


def test_dedup_ids_are_scoped_by_routing_key() -> None:
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"), open_("B@0"))
    first, second = deposit("A@0", 5, dedup_id="same"), deposit("B@0", 7, dedup_id="same")
    assert cluster.run(first).status is ResultStatus.ACCEPTED
    assert cluster.run(second).status is ResultStatus.ACCEPTED and not cluster.result(second.command_id).replayed
    balances = [account.balance for account in (cluster.account("A@0"), cluster.account("B@0")) if account]
    assert balances == [5, 7]


def test_duplicates_of_an_in_flight_command_wait_for_its_result() -> None:
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100))
    for refused in (False, True):
        if refused:
            accept_all(cluster, lock("X@1"))
        original = transfer("A@0", "X@1", 10)
        cluster.submit(original)
        waiting = [same_dedup(original) for _ in range(DEDUP_WAITERS_MAX)]
        for duplicate in waiting:
            cluster.submit(duplicate)
        assert all(cluster.results_for(d.command_id) == [] for d in waiting)
        asked = query("A@0", original.command_id)
        cluster.submit(asked)
        found = cluster.result(asked.command_id)
        assert found.message == "in flight" and found.queried is None
        cluster.drain()
        first = cluster.result(original.command_id)
        assert (first.status is ResultStatus.REJECTED) == refused
        for duplicate in waiting:
            again = cluster.result(duplicate.command_id)
            assert again.replayed and dataclasses.replace(again, command_id=first.command_id, replayed=False) == first
        found = cluster.run(query("A@0", original.command_id))
        assert found.queried == first
    check_one_result_each(cluster, settled=True)
    check_state(cluster, {"USD": 100})


def test_a_batch_duplicate_waits_for_the_coordinator() -> None:
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0"), open_("X@1"), open_("Y@2"), deposit("A@0", 100))
    original = batch(("A@0", -30), ("X@1", 20), ("Y@2", 10), batch_id=make_batch_id(1))
    cluster.submit(original)
    duplicate = same_dedup(original)
    cluster.submit(duplicate)
    cluster.drain()
    first = cluster.result(original.command_id)
    assert first.status is ResultStatus.ACCEPTED
    assert [p.account_id for p in first.positions] == ["A@0", "X@1", "Y@2"]
    assert cluster.result(duplicate.command_id).replayed
    check_state(cluster, {"USD": 100})


# -- the query only answers through the routing key the command used ------------------------------------------------


def test_query_through_the_commands_routing_key() -> None:
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"), open_("B@0"))
    paid = deposit("A@0", 10)
    cluster.run(paid)
    found = cluster.run(query("A@0", paid.command_id))
    assert found.status is ResultStatus.ACCEPTED and found.queried == cluster.result(paid.command_id)
    assert found.reference_id == paid.command_id
    # Through another account of the same shard the answer must be the one another
    # partitioning would give: not found (and no peeking at other accounts' results).
    assert cluster.run(query("B@0", paid.command_id)).code is E.COMMAND_NOT_FOUND


def test_a_commands_result_is_found_through_its_batch_id() -> None:
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"), open_("B@0"), deposit("A@0", 10))
    moved = batch(("A@0", -10), ("B@0", 10))
    cluster.run(moved)
    found = cluster.run(query(moved.batch_id, moved.command_id))
    assert found.queried == cluster.result(moved.command_id)


# -- a duplicate's own command id: found by a query, in use, bounded ------------------------------------------------


def test_a_query_for_a_duplicates_own_id_says_whose_duplicate_it_is() -> None:
    """Issue 11: GET /v1/commands/{id} must answer for a duplicate's id too; it used to be
    COMMAND_NOT_FOUND, as the duplicate's id was never indexed."""
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100))
    original = transfer("A@0", "X@1", 10)
    cluster.submit(original)
    waiting = same_dedup(original)
    cluster.submit(waiting)  # waits: the original is in flight
    asked = cluster.run(query("A@0", waiting.command_id))
    assert (asked.status, asked.queried) == (ResultStatus.ACCEPTED, None)
    assert asked.message == f"in flight: a duplicate of command {original.command_id}"
    cluster.drain()
    late = same_dedup(original)
    assert cluster.run(late).replayed
    for duplicate in (waiting, late):
        found = cluster.run(query("A@0", duplicate.command_id))
        assert found.message == f"found: a duplicate of command {original.command_id}"
        assert found.queried == cluster.result(duplicate.command_id)  # what the duplicate was answered
        assert found.queried is not None and found.queried.replayed
        assert found.queried.original_command_id == original.command_id
    assert cluster.run(query("X@1", late.command_id)).code is E.COMMAND_NOT_FOUND  # only through its routing key


def test_a_duplicates_id_is_in_use_like_any_other() -> None:
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"))
    original = deposit("A@0", 5)
    cluster.run(original)
    duplicate = same_dedup(original)
    cluster.run(duplicate)
    reused = deposit("A@0", 7, command_id=duplicate.command_id)
    assert [result.code for result in cluster.submit(reused).results] == [E.ID_IN_USE]
    assert cluster.balance("A@0") == 5


def test_at_most_so_many_duplicate_ids_are_indexed_per_command() -> None:
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"))
    original = deposit("A@0", 5)
    cluster.run(original)
    duplicates = [same_dedup(original) for _ in range(DEDUP_DUPLICATES_INDEXED_MAX + 3)]
    for duplicate in duplicates:
        assert cluster.run(duplicate).replayed  # every one is answered
    codes = [cluster.run(query("A@0", duplicate.command_id)).code for duplicate in duplicates]
    assert codes == [None] * DEDUP_DUPLICATES_INDEXED_MAX + [E.COMMAND_NOT_FOUND] * 3
    (outcome_again,) = cluster.submit(dataclasses.replace(original)).results  # the original's own id, resent
    assert outcome_again.replayed
    entry = cluster.stores[0].get(Table.DEDUP, f"A@0|{original.dedup_id}")
    assert entry.duplicates == [duplicate.command_id for duplicate in duplicates[:DEDUP_DUPLICATES_INDEXED_MAX]]


def test_a_duplicate_whose_id_another_command_uses_is_answered_but_not_indexed() -> None:
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"))
    other, original = deposit("A@0", 1), deposit("A@0", 5)
    cluster.run(other)
    cluster.run(original)
    taken = same_dedup(original, command_id=other.command_id)
    cluster.submit(taken)
    assert cluster.results_for(other.command_id)[-1].replayed
    found = cluster.run(query("A@0", other.command_id))
    assert found.queried is not None and found.queried.original_command_id == other.command_id  # still the other's


def test_a_v1_command_keeps_its_digest_but_is_refused_as_anonymous_after_the_upgrade() -> None:
    """A CaptureHold written with the released v1 schema has no currency and no principal: they
    decode to "" and the anonymous principal, and are left out of the payload's digest, so the
    digest is the one a v1 shard remembered the first attempt by. Since commands carry their
    principal (issue 12), the anonymous retry is refused (FORBIDDEN) before the dedup memory is
    asked: a v1 producer must send its principal."""
    released = load_folder(SCHEMA_ROOT / RELEASED_DIR / "v1", "v1")["streamwallet.command.CaptureHold"]
    fields = {"command_id": "c-1", "dedup_id": "cap-1", "account_id": "A@0", "hold_id": "h", "amount": 5}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, released.parsed_plain, {**fields, "to_account_id": "B@0"})
    decoded = Codec().decode(b"\xc3\x01" + released.fingerprint + body.getvalue())
    assert isinstance(decoded, CaptureHold) and decoded.currency == "" and decoded.principal == ANONYMOUS
    v1_values = [fields["dedup_id"], fields["account_id"], fields["hold_id"], fields["amount"], "B@0"]
    v1_digest = hashlib.blake2b(repr(("CaptureHold", v1_values)).encode(), digest_size=16).digest()
    assert payload_digest(decoded) == v1_digest
    assert payload_digest(dataclasses.replace(decoded, currency="USD")) != v1_digest
    assert payload_digest(dataclasses.replace(decoded, principal=TESTER)) != v1_digest
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"), open_("B@0"), deposit("A@0", 10), hold("A@0", "h", 5))
    first = cluster.run(dataclasses.replace(decoded, command_id="c-0", currency="USD", principal=TESTER))
    assert first.status is ResultStatus.ACCEPTED
    (answer,) = cluster.submit(decoded).results
    assert (answer.code, answer.replayed) == (E.FORBIDDEN, False)


# -- a malformed command corrected under the same dedup id -----------------------------------------------------------


def test_a_malformed_command_can_be_corrected_under_its_dedup_id() -> None:
    """Issue 13: a command rejected by its stateless checks burnt its dedup id for the whole
    window: the corrected command was a DEDUP_CONFLICT."""
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"))
    malformed = deposit("A@0", 0, dedup_id="pay-1")
    assert cluster.run(malformed).code is E.INVALID_AMOUNT
    assert cluster.run(same_dedup(malformed)).code is E.INVALID_AMOUNT  # an identical retry: the same answer...
    assert cluster.result(cluster.results[-1].command_id).replayed  # ...from the dedup memory
    corrected = same_dedup(malformed, amount=5)
    first = cluster.run(corrected)
    assert first.status is ResultStatus.ACCEPTED and not first.replayed
    retried = cluster.run(same_dedup(corrected))
    assert retried.replayed and retried.original_command_id == corrected.command_id
    assert cluster.run(same_dedup(malformed)).code is E.DEDUP_CONFLICT  # the id now belongs to the correction
    assert cluster.balance("A@0") == 5
    assert cluster.run(query("A@0", corrected.command_id)).queried == first


def test_a_correction_needs_a_command_id_of_its_own() -> None:
    """A command id has one final result: the malformed command's was its rejection."""
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"))
    malformed = deposit("A@0", 5, "EURO")
    assert cluster.run(malformed).code is E.INVALID_CURRENCY
    same_id = dataclasses.replace(malformed, currency="USD")
    assert [result.code for result in cluster.submit(same_id).results] == [E.ID_IN_USE]
    corrected = same_dedup(malformed, currency="USD")
    assert cluster.run(corrected).status is ResultStatus.ACCEPTED and cluster.balance("A@0") == 5
    assert cluster.run(query("A@0", malformed.command_id)).code is E.COMMAND_NOT_FOUND  # taken over


def test_a_rejection_that_depends_on_the_state_still_burns_its_dedup_id() -> None:
    """Only the message's own checks free it: a rejection by the state (funds, limits,
    currency of the account, …) is the command's answer for the window, as before."""
    cluster = Cluster(1)
    accept_all(cluster, open_("A@0"), deposit("A@0", 100))
    too_low = limits("A@0", 0, 50)  # INVALID_LIMITS from the balance, not from the message
    assert cluster.run(too_low).code is E.INVALID_LIMITS
    assert cluster.run(same_dedup(too_low, upper_limit=500)).code is E.DEDUP_CONFLICT
    malformed = limits("A@0", 5, 50)  # INVALID_LIMITS from the message itself
    assert cluster.run(malformed).code is E.INVALID_LIMITS
    assert cluster.run(same_dedup(malformed, lower_limit=0, upper_limit=500)).status is ResultStatus.ACCEPTED
    broke = withdraw("A@0", 1_000)
    assert cluster.run(broke).code is E.INSUFFICIENT_FUNDS
    assert cluster.run(same_dedup(broke, amount=10)).code is E.DEDUP_CONFLICT


# -- a flow finished late must not answer a newer command that reused its dedup id ----------------------------------


def test_retention_never_forgets_a_command_in_flight() -> None:
    """T1's dedup entry outlives the retention window while T1 is in flight: a retry T2
    after the window is still T1's duplicate, waits, and gets T1's result."""
    cluster = Cluster(3, config=ShardConfig(retention_ms=1_000))
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100))
    t1 = transfer("A@0", "X@1", 10, dedup_id="pay-1")
    cluster.submit(t1)
    cluster.advance(2_000)  # past the window; the entry stays because T1 is in flight
    t2 = same_dedup(t1)
    cluster.submit(t2)  # waits for T1
    assert cluster.results_for(t2.command_id) == []
    cluster.drain()
    assert cluster.result(t2.command_id).replayed
    assert cluster.result(t2.command_id).original_command_id == t1.command_id
    check_one_result_each(cluster, settled=True)
    check_state(cluster, {"USD": 100})
    cluster.advance(2_000)  # settled: now it is forgotten, and the same dedup id is a new command
    t3 = same_dedup(t1)
    cluster.run(t3)
    assert not cluster.result(t3.command_id).replayed


# -- commands sent where they do not belong ---------------------------------------------------------------------


def test_a_misrouted_command_is_refused_and_not_remembered() -> None:
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0"))
    misrouted = deposit("A@0", 10)
    outcome = cluster.handle(1, misrouted, cluster.now)
    assert [r.code for r in outcome.results] == [E.MALFORMED]
    assert cluster.run(same_dedup(misrouted)).status is ResultStatus.ACCEPTED


# -- ids reused by clients, 64-bit bounds, retention under pressure -----------------------------------------------


def test_reusing_a_command_id_with_another_dedup_id_is_a_rejection_not_a_crash() -> None:
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0"), open_("B@0"), deposit("A@0", 100))
    first = transfer("A@0", "B@0", 10, command_id="pay")
    cluster.run(first)
    cluster.submit(transfer("A@0", "B@0", 10, command_id="pay"))  # another dedup id
    first_result, second_result = cluster.results_for("pay")  # one id, two commands: two answers
    assert first_result.status is ResultStatus.ACCEPTED
    assert (second_result.status, second_result.code) == (ResultStatus.REJECTED, E.ID_IN_USE)
    assert (cluster.balance("A@0"), cluster.balance("B@0")) == (90, 10)


@pytest.mark.parametrize(("destination", "compensated"), [("B@0", False), ("Y@2", True)])
def test_a_transfer_id_already_credited_from_another_shard_is_refused(destination: str, compensated: bool) -> None:
    """Two sources on different shards, one client-chosen command id: the destination
    refuses the second credit (refunded when it crossed shards), it never credits twice."""
    cluster = Cluster(3)
    accept_all(
        cluster, open_("A@0"), open_("B@0"), open_("X@1"), open_("Y@2"), deposit("A@0", 100), deposit("X@1", 100)
    )
    cluster.run(transfer("X@1", destination, 5, command_id="tx"))
    cluster.submit(transfer("A@0", destination, 5, command_id="tx"))
    cluster.drain()
    refused = cluster.results_for("tx")[-1]
    assert (refused.status, refused.code) == (ResultStatus.REJECTED, E.ID_IN_USE)
    assert (cluster.balance("A@0"), cluster.balance(destination)) == (100, 5)
    assert any(event.kind is EventKind.TRANSFER_REFUNDED for event in cluster.events) is compensated


def test_reusing_a_batch_id_while_it_is_in_flight_is_a_rejection_not_a_crash() -> None:
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100))
    batch_id = make_batch_id(2)
    cluster.submit(batch(("A@0", -10), ("X@1", 10), batch_id=batch_id))
    cluster.submit(batch(("A@0", -20), ("X@1", 20), batch_id=batch_id))  # another dedup id
    cluster.drain()
    check_one_result_each(cluster, settled=True)


def test_held_and_pending_stay_within_64_bits() -> None:
    cluster = Cluster(3)
    accept_all(cluster, open_("A@0", lower_limit=-AMOUNT_MAX), deposit("A@0", AMOUNT_MAX))
    cluster.run(hold("A@0", "h1", AMOUNT_MAX))
    cluster.run(hold("A@0", "h2", AMOUNT_MAX))
    account = cluster.account("A@0")
    assert account is not None
    assert account.held <= AMOUNT_MAX, account.held


def test_a_full_window_still_answers_duplicates_and_finishes_flows_under_way() -> None:
    """Full, a shard refuses only new commands: duplicates are answered (waiting ones when
    their original finishes), a reused command id is still ID_IN_USE, and a leg of a flow
    already accepted elsewhere is applied (so a shard may remember a little more than the bound)."""
    cluster = Cluster(3, config=ShardConfig(retained_entries_max=3))
    accept_all(cluster, open_("A@0"), deposit("A@0", 100), open_("X@1"), deposit("X@1", 1), deposit("X@1", 1))
    original = transfer("A@0", "X@1", 10)
    cluster.submit(original)  # shard 0 now remembers 3 entries: full; shard 1 was already full
    duplicate = same_dedup(original)
    assert cluster.submit(duplicate).results == []  # waits for the original
    refused = cluster.submit(deposit("A@0", 1)).results
    assert [result.code for result in refused] == [E.DEDUP_WINDOW_FULL]
    reused = cluster.submit(deposit("A@0", 1, command_id=original.command_id)).results
    assert [result.code for result in reused] == [E.ID_IN_USE]
    cluster.drain()  # the credit is applied on the full shard 1
    reused_answer, final = cluster.results_for(original.command_id)  # one id, two commands: two answers
    assert reused_answer.code is E.ID_IN_USE and final.status is ResultStatus.ACCEPTED
    assert cluster.result(duplicate.command_id).replayed
    assert (cluster.balance("A@0"), cluster.balance("X@1")) == (90, 12)
    assert cluster.remembered(1) == 4
    assert cluster.run(deposit("X@1", 1)).code is E.DEDUP_WINDOW_FULL
    check_state(cluster, {"USD": 102})
    check_quiescent(cluster)
