"""Commands clients send. Plain data; `validate()` checks what can be checked without
state (ids, amounts, currencies, shapes) and returns a Rejection, never raises.

Every mutating command carries a client-chosen `dedup_id`: a repeat with the same
payload returns the first result and changes nothing; with a different payload it is
rejected as DEDUP_CONFLICT. Dedup ids are scoped by the command's routing key (the
account it is sent to, or the batch id), which is also its Kafka message key.
"""

from __future__ import annotations

import dataclasses

from ledger.currencies import CURRENCY_EXPONENTS
from ledger.errors import ErrorCode, InvariantViolation, Rejection
from ledger.limits import (
    ACCOUNT_ID_LENGTH_MAX,
    AMOUNT_MAX,
    BATCH_LEGS_MAX,
    BATCH_LEGS_MIN,
    COMMAND_ID_LENGTH_MAX,
    DEDUP_ID_LENGTH_MAX,
    HOLD_TTL_MS_MAX,
    HOLD_TTL_MS_MIN,
    METADATA_ENTRIES_MAX,
    METADATA_KEY_LENGTH_MAX,
    METADATA_VALUE_LENGTH_MAX,
    REASON_LENGTH_MAX,
    REFERENCE_ID_LENGTH_MAX,
)
from ledger.money import is_positive_amount
from ledger.principals import ANONYMOUS, PRINCIPAL_ID_LENGTH_MAX, Principal


@dataclasses.dataclass(slots=True, kw_only=True)
class OpenAccount:
    command_id: str
    dedup_id: str
    account_id: str
    currency: str
    lower_limit: int = 0
    upper_limit: int = AMOUNT_MAX
    parent_account_id: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service
    owner: str = ""  # the principal id of the account's holder (its OWNER); "": none

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class UpdateLimits:
    command_id: str
    dedup_id: str
    account_id: str
    lower_limit: int
    upper_limit: int
    currency: str  # the limits are minor units of it: must be the account's (CURRENCY_MISMATCH)
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class LockAccount:
    command_id: str
    dedup_id: str
    account_id: str
    reason: str = ""
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class UnlockAccount:
    command_id: str
    dedup_id: str
    account_id: str
    reason: str = ""
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class CloseAccount:
    command_id: str
    dedup_id: str
    account_id: str
    reason: str = ""
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class Deposit:
    command_id: str
    dedup_id: str
    account_id: str
    amount: int
    currency: str
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class Withdraw:
    command_id: str
    dedup_id: str
    account_id: str
    amount: int
    currency: str
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class Transfer:
    """Move `amount` from one account to another; its transfer id is its command id."""

    command_id: str
    dedup_id: str
    from_account_id: str
    to_account_id: str
    amount: int
    currency: str
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.from_account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class BatchLeg:
    account_id: str
    amount: int  # signed: negative debits the account, positive credits it
    currency: str


@dataclasses.dataclass(slots=True, kw_only=True)
class Batch:
    """All-or-nothing postings (2..BATCH_LEGS_MAX) over one or more accounts; each currency
    nets to zero. An account may appear in several postings (a payment and its fee): they
    are applied in the order given, each against the balance the ones before it left."""

    command_id: str
    dedup_id: str
    batch_id: str
    legs: list[BatchLeg]
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.batch_id


@dataclasses.dataclass(slots=True, kw_only=True)
class PlaceHold:
    command_id: str
    dedup_id: str
    account_id: str
    hold_id: str
    amount: int
    currency: str
    ttl_ms: int
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class CaptureHold:
    """Capture part or all of a hold into `to_account_id`; the rest is released."""

    command_id: str
    dedup_id: str
    account_id: str
    hold_id: str
    amount: int
    to_account_id: str
    currency: str  # the amount is minor units of it: must be the hold's (CURRENCY_MISMATCH)
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class VoidHold:
    command_id: str
    dedup_id: str
    account_id: str
    hold_id: str
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class ReverseTransfer:
    """Send an earlier transfer back, at most once; sent to the account it credited."""

    command_id: str
    dedup_id: str
    account_id: str
    transfer_id: str
    reason: str = ""
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class SetVelocityRules:
    """Set an account's velocity rules (ledger/velocity.py): limits on its outgoing money and
    payments over a rolling hour and day; 0 is no limit, all four 0 removes the rules.

    An operator's command: the OPERATOR role (like LockAccount), never the account's owner."""

    command_id: str
    dedup_id: str
    account_id: str
    hour_amount_max: int = 0
    hour_count_max: int = 0
    day_amount_max: int = 0
    day_count_max: int = 0
    freeze_on_trip: bool = False
    currency: str = ""  # the amount limits are minor units of it: must be the account's (CURRENCY_MISMATCH)
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class QueryCommand:
    """Look up the result of an earlier command, sent to the same routing key it was."""

    command_id: str
    account_id: str
    target_command_id: str
    principal: Principal = ANONYMOUS  # who sends it; set by the gateway or the producing service

    @property
    def routing_key(self) -> str:
        return self.account_id


@dataclasses.dataclass(slots=True, kw_only=True)
class AssignOwner:
    """Give an account another owner (or none: "")."""

    command_id: str
    dedup_id: str
    account_id: str
    owner: str
    principal: Principal = ANONYMOUS

    @property
    def routing_key(self) -> str:
        return self.account_id


MutatingCommand = (
    OpenAccount
    | UpdateLimits
    | LockAccount
    | UnlockAccount
    | CloseAccount
    | Deposit
    | Withdraw
    | Transfer
    | Batch
    | PlaceHold
    | CaptureHold
    | VoidHold
    | ReverseTransfer
    | SetVelocityRules
    | AssignOwner
)
Command = MutatingCommand | QueryCommand

# Every command type, in the order of the API's documentation.
COMMAND_TYPES: tuple[type[Command], ...] = (
    OpenAccount,
    UpdateLimits,
    LockAccount,
    UnlockAccount,
    CloseAccount,
    Deposit,
    Withdraw,
    Transfer,
    Batch,
    PlaceHold,
    CaptureHold,
    VoidHold,
    ReverseTransfer,
    SetVelocityRules,
    QueryCommand,
    AssignOwner,
)


def _malformed(message: str) -> Rejection:
    return Rejection(ErrorCode.MALFORMED, message)


def is_identifier(value: object, length_max: int) -> bool:
    """Printable ASCII without space and without "|" (the stores' key separator)."""
    return (
        type(value) is str
        and 0 < len(value) <= length_max
        and value.isascii()
        and value.isprintable()
        and " " not in value
        and "|" not in value
    )


def _check_id(value: object, field: str, length_max: int) -> Rejection | None:
    if not is_identifier(value, length_max):
        return _malformed(f"{field} must be 1..{length_max} printable ASCII characters without spaces or '|'")
    return None


def _check_text(value: object, field: str, length_max: int) -> Rejection | None:
    if not isinstance(value, str) or len(value) > length_max:
        return _malformed(f"{field} must be text of at most {length_max} characters")
    return None


def check_metadata(metadata: object) -> Rejection | None:
    if not isinstance(metadata, dict) or len(metadata) > METADATA_ENTRIES_MAX:
        return _malformed(f"metadata must be a map of at most {METADATA_ENTRIES_MAX} entries")
    for key, value in metadata.items():
        if not isinstance(key, str) or not 0 < len(key) <= METADATA_KEY_LENGTH_MAX:
            return _malformed(f"metadata keys must be 1..{METADATA_KEY_LENGTH_MAX} characters")
        if not isinstance(value, str) or len(value) > METADATA_VALUE_LENGTH_MAX:
            return _malformed(f"metadata values must be at most {METADATA_VALUE_LENGTH_MAX} characters")
    return None


def _check_owner(owner: object) -> Rejection | None:
    """A principal id, or "" for no owner."""
    if not isinstance(owner, str) or len(owner) > PRINCIPAL_ID_LENGTH_MAX or not owner.isprintable():
        return _malformed(f"owner must be a principal id of at most {PRINCIPAL_ID_LENGTH_MAX} printable characters")
    return None


def _check_currency(currency: object) -> Rejection | None:
    if currency == "":  # what a command written with a schema before the field existed decodes to
        return Rejection(ErrorCode.INVALID_CURRENCY, "the currency the amount is priced in must be stated")
    if not isinstance(currency, str) or currency not in CURRENCY_EXPONENTS:
        return Rejection(ErrorCode.INVALID_CURRENCY, f"{currency!r} is not an ISO 4217 currency code")
    return None


def _check_amount(amount: object) -> Rejection | None:
    if not is_positive_amount(amount):
        return Rejection(ErrorCode.INVALID_AMOUNT, f"amount must be an integer of minor units in 1..{AMOUNT_MAX}")
    return None


def check_limits(lower_limit: object, upper_limit: object) -> Rejection | None:
    if type(lower_limit) is not int or type(upper_limit) is not int:
        return Rejection(ErrorCode.INVALID_LIMITS, "limits must be integers of minor units")
    if not -AMOUNT_MAX <= lower_limit <= 0 <= upper_limit <= AMOUNT_MAX:
        return Rejection(
            ErrorCode.INVALID_LIMITS,
            f"limits must satisfy -{AMOUNT_MAX} <= lower_limit <= 0 <= upper_limit <= {AMOUNT_MAX}",
        )
    return None


def check_envelope(command: Command) -> Rejection | None:
    """What must hold before a command can even be remembered by its dedup id: its ids
    and its routing key. Such a rejection is not recorded in the dedup memory."""
    if (rejection := _check_id(command.command_id, "command_id", COMMAND_ID_LENGTH_MAX)) is not None:
        return rejection
    if not isinstance(command, QueryCommand):
        rejection = _check_id(command.dedup_id, "dedup_id", DEDUP_ID_LENGTH_MAX)
        if rejection is not None:
            return rejection
    routing_field = {Transfer: "from_account_id", Batch: "batch_id"}.get(type(command), "account_id")
    length_max = REFERENCE_ID_LENGTH_MAX if isinstance(command, Batch) else ACCOUNT_ID_LENGTH_MAX
    return _check_id(command.routing_key, routing_field, length_max)


def validate(command: Command) -> Rejection | None:
    """Stateless checks, in the precedence order of ErrorCode."""
    return check_envelope(command) or validate_body(command)


def validate_body(command: Command) -> Rejection | None:
    """The checks after the envelope (see check_envelope, which has checked the ids and the
    routing key), in precedence order."""
    match command:
        case OpenAccount():
            return (
                (
                    None
                    if command.parent_account_id is None
                    else _check_id(command.parent_account_id, "parent_account_id", ACCOUNT_ID_LENGTH_MAX)
                )
                or check_metadata(command.metadata)
                or _check_owner(command.owner)
                or _check_currency(command.currency)
                or check_limits(command.lower_limit, command.upper_limit)
                or (
                    Rejection(ErrorCode.SAME_ACCOUNT, "an account cannot be its own parent")
                    if command.parent_account_id == command.account_id
                    else None
                )
            )
        case UpdateLimits():
            return _check_currency(command.currency) or check_limits(command.lower_limit, command.upper_limit)
        case LockAccount() | UnlockAccount() | CloseAccount():
            return _check_text(command.reason, "reason", REASON_LENGTH_MAX)
        case Deposit() | Withdraw():
            return (
                check_metadata(command.metadata) or _check_amount(command.amount) or _check_currency(command.currency)
            )
        case Transfer():
            return (
                _check_id(command.to_account_id, "to_account_id", ACCOUNT_ID_LENGTH_MAX)
                or check_metadata(command.metadata)
                or _check_amount(command.amount)
                or _check_currency(command.currency)
                or (
                    Rejection(ErrorCode.SAME_ACCOUNT, "a transfer needs two different accounts")
                    if command.from_account_id == command.to_account_id
                    else None
                )
            )
        case Batch():
            return _validate_batch(command)
        case PlaceHold():
            return (
                _check_id(command.hold_id, "hold_id", REFERENCE_ID_LENGTH_MAX)
                or _check_amount(command.amount)
                or _check_currency(command.currency)
                or (
                    None
                    if type(command.ttl_ms) is int and HOLD_TTL_MS_MIN <= command.ttl_ms <= HOLD_TTL_MS_MAX
                    else Rejection(ErrorCode.INVALID_EXPIRY, f"ttl_ms must be in {HOLD_TTL_MS_MIN}..{HOLD_TTL_MS_MAX}")
                )
            )
        case CaptureHold():
            return (
                _check_id(command.hold_id, "hold_id", REFERENCE_ID_LENGTH_MAX)
                or _check_id(command.to_account_id, "to_account_id", ACCOUNT_ID_LENGTH_MAX)
                or _check_amount(command.amount)
                or _check_currency(command.currency)
                or (
                    Rejection(ErrorCode.SAME_ACCOUNT, "a hold cannot be captured into its own account")
                    if command.to_account_id == command.account_id
                    else None
                )
            )
        case VoidHold():
            return _check_id(command.hold_id, "hold_id", REFERENCE_ID_LENGTH_MAX)
        case ReverseTransfer():
            return _check_id(command.transfer_id, "transfer_id", COMMAND_ID_LENGTH_MAX) or _check_text(
                command.reason, "reason", REASON_LENGTH_MAX
            )
        case SetVelocityRules():
            return (
                (None if type(command.freeze_on_trip) is bool else _malformed("freeze_on_trip must be true or false"))
                or _check_currency(command.currency)
                or _check_velocity_limits(command)
            )
        case AssignOwner():
            return _check_owner(command.owner)
        case QueryCommand():
            return _check_id(command.target_command_id, "target_command_id", COMMAND_ID_LENGTH_MAX)
    raise InvariantViolation(f"unknown command type {type(command).__name__}")


def _check_velocity_limits(command: SetVelocityRules) -> Rejection | None:
    limits = (command.hour_amount_max, command.hour_count_max, command.day_amount_max, command.day_count_max)
    if any(type(limit) is not int or not 0 <= limit <= AMOUNT_MAX for limit in limits):
        return Rejection(ErrorCode.INVALID_LIMITS, f"velocity limits are integers in 0..{AMOUNT_MAX} (0: no limit)")
    return None


def _validate_batch(command: Batch) -> Rejection | None:
    if (rejection := check_metadata(command.metadata)) is not None:
        return rejection
    if not isinstance(command.legs, list) or not BATCH_LEGS_MIN <= len(command.legs) <= BATCH_LEGS_MAX:
        return _malformed(f"a batch has {BATCH_LEGS_MIN}..{BATCH_LEGS_MAX} legs")
    for leg in command.legs:
        if (rejection := _check_id(leg.account_id, "leg account_id", ACCOUNT_ID_LENGTH_MAX)) is not None:
            return rejection
    for leg in command.legs:
        if type(leg.amount) is not int or leg.amount == 0 or not -AMOUNT_MAX <= leg.amount <= AMOUNT_MAX:
            return Rejection(ErrorCode.INVALID_AMOUNT, f"leg amounts are non-zero integers within ±{AMOUNT_MAX}")
    for leg in command.legs:  # every amount before any currency: INVALID_AMOUNT precedes INVALID_CURRENCY
        if (rejection := _check_currency(leg.currency)) is not None:
            return rejection
    currency_of: dict[str, str] = {}
    for leg in command.legs:  # an account may repeat (postings in order), in its one currency
        if currency_of.setdefault(leg.account_id, leg.currency) != leg.currency:
            return Rejection(
                ErrorCode.DUPLICATE_LEG,
                f"account {leg.account_id} appears in {currency_of[leg.account_id]} and {leg.currency}: "
                "an account's postings in a batch share one currency",
            )
    net: dict[str, int] = {}
    for leg in command.legs:
        net[leg.currency] = net.get(leg.currency, 0) + leg.amount
    unbalanced = sorted(currency for currency, total in net.items() if total != 0)
    if unbalanced:
        return Rejection(ErrorCode.UNBALANCED_BATCH, f"legs must net to zero per currency; they do not in {unbalanced}")
    return None
