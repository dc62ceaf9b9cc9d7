"""The stateless checks of a leg: fields no shard ever writes are refused (INVALID_LEG)
before its handler compares it with the state.

Legs are written by shards, from commands whose checks they passed: ids are identifiers,
amounts within their bounds, currencies known, a flow's command type the one that starts
it. A leg that breaks one of these was forged (or corrupted): refusing it here keeps the
handlers' arithmetic and indexing on values they can trust.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.commands import check_metadata, is_identifier
from ledger.currencies import CURRENCY_EXPONENTS
from ledger.legs import BatchAck, BatchDecision, BatchPrepare, BatchVote, CreditLeg, Flow, Leg, RefundLeg, SettleLeg
from ledger.limits import (
    ACCOUNT_ID_LENGTH_MAX,
    AMOUNT_MAX,
    BATCH_LEGS_MAX,
    COMMAND_ID_LENGTH_MAX,
    DEDUP_ID_LENGTH_MAX,
    LEG_MESSAGE_LENGTH_MAX,
    REFERENCE_ID_LENGTH_MAX,
)
from ledger.money import is_positive_amount

# The command that starts each flow (what its CreditLeg's command_type must be).
FLOW_COMMAND_TYPES = {Flow.TRANSFER: "Transfer", Flow.CAPTURE: "CaptureHold", Flow.REVERSAL: "ReverseTransfer"}


def problem(leg: Leg) -> str | None:
    """What is wrong with the leg's fields, or None."""
    check = _CHECKS.get(type(leg))
    return None if check is None else check(leg)


def _first(*problems: str | None) -> str | None:
    return next((found for found in problems if found is not None), None)


def _identifier(value: str, field: str, length_max: int) -> str | None:
    return None if is_identifier(value, length_max) else f"{field} is not an identifier of 1..{length_max} characters"


def _account(value: str, field: str) -> str | None:
    return _identifier(value, field, ACCOUNT_ID_LENGTH_MAX)


def _amount(value: int) -> str | None:
    return None if is_positive_amount(value) else f"amount {value} is not in 1..{AMOUNT_MAX}"


def _count(value: int, field: str) -> str | None:
    return None if type(value) is int and 0 <= value <= AMOUNT_MAX else f"{field} {value} is not in 0..{AMOUNT_MAX}"


def _message(value: str) -> str | None:
    return None if len(value) <= LEG_MESSAGE_LENGTH_MAX else f"message longer than {LEG_MESSAGE_LENGTH_MAX} characters"


def _leg_index(value: int) -> str | None:
    return None if 0 <= value < BATCH_LEGS_MAX else f"leg index {value} is not in 0..{BATCH_LEGS_MAX - 1}"


def _flow_leg(leg: CreditLeg | SettleLeg | RefundLeg) -> str | None:
    return _first(
        _identifier(leg.transfer_id, "transfer_id", COMMAND_ID_LENGTH_MAX),
        _account(leg.from_account_id, "from_account_id"),
        _account(leg.to_account_id, "to_account_id"),
        "from and to are the same account" if leg.from_account_id == leg.to_account_id else None,
        _amount(leg.amount),
    )


def _credit(leg: CreditLeg) -> str | None:
    rejection = check_metadata(leg.metadata)
    return _first(
        _flow_leg(leg),
        None if leg.currency in CURRENCY_EXPONENTS else f"{leg.currency!r} is not a currency",
        None if leg.command_id == leg.transfer_id else "a flow's id is its command's id",
        _identifier(leg.dedup_id, "dedup_id", DEDUP_ID_LENGTH_MAX),
        None
        if FLOW_COMMAND_TYPES[leg.flow] == leg.command_type
        else f"a {leg.flow} is not started by {leg.command_type!r}",
        None
        if (leg.reversal_of is not None) == (leg.flow is Flow.REVERSAL)
        else "reversal_of is set exactly for reversals",
        None if leg.reversal_of is None else _identifier(leg.reversal_of, "reversal_of", COMMAND_ID_LENGTH_MAX),
        None
        if leg.source_position.account_id == leg.from_account_id and leg.source_position.sequence >= 1
        else "source_position is not the source account after a debit",
        None if rejection is None else rejection.message,
    )


def _settle(leg: SettleLeg) -> str | None:
    return _first(_flow_leg(leg), _count(leg.source_sequence, "source_sequence"))


def _refund(leg: RefundLeg) -> str | None:
    return _first(_flow_leg(leg), _count(leg.source_sequence, "source_sequence"), _message(leg.message))


def _batch_leg(leg: BatchPrepare | BatchVote | BatchDecision | BatchAck) -> str | None:
    return _first(
        _identifier(leg.batch_id, "batch_id", REFERENCE_ID_LENGTH_MAX),
        _leg_index(leg.leg_index),
        _account(leg.account_id, "account_id"),
        _count(leg.incarnation, "incarnation"),
    )


def _posting(amount: int) -> str | None:
    return (
        None
        if type(amount) is int and amount != 0 and -AMOUNT_MAX <= amount <= AMOUNT_MAX
        else (f"amount {amount} out of range")
    )


def _postings(leg: BatchPrepare) -> str | None:
    if not leg.postings:
        return None
    if not 2 <= len(leg.postings) <= BATCH_LEGS_MAX - leg.leg_index or leg.postings[0] != leg.amount:
        return f"postings are 2..{BATCH_LEGS_MAX} amounts from the leg's index on, the first its amount"
    return _first(*(_posting(amount) for amount in leg.postings))


def _prepare(leg: BatchPrepare) -> str | None:
    return _first(
        _batch_leg(leg),
        _posting(leg.amount),
        _postings(leg),
        None if leg.currency in CURRENCY_EXPONENTS else f"{leg.currency!r} is not a currency",
        _identifier(leg.command_id, "command_id", COMMAND_ID_LENGTH_MAX),
        _identifier(leg.dedup_id, "dedup_id", DEDUP_ID_LENGTH_MAX),
    )


def _vote(leg: BatchVote) -> str | None:
    return _first(
        _batch_leg(leg),
        _count(leg.sequence, "sequence"),
        None if (leg.code is None) == leg.accepted else "a yes vote has no code, a no vote has one",
        _message(leg.message),
    )


def _decision(leg: BatchDecision) -> str | None:
    # A presumed abort (an answer to a vote for no batch here) names no command.
    ids_stated = leg.commit or leg.command_id != "" or leg.dedup_id != ""
    return _first(
        _batch_leg(leg),
        _count(leg.sequence, "sequence"),
        None if not leg.commit or leg.code is None else "a commit has no code",
        _identifier(leg.command_id, "command_id", COMMAND_ID_LENGTH_MAX) if ids_stated else None,
        _identifier(leg.dedup_id, "dedup_id", DEDUP_ID_LENGTH_MAX) if ids_stated else None,
    )


def _ack(leg: BatchAck) -> str | None:
    return _first(
        _batch_leg(leg),
        None
        if leg.position is None or leg.position.account_id == leg.account_id
        else "the position is another account's",
    )


_CHECKS: dict[type, Callable[[Any], str | None]] = {
    CreditLeg: _credit,
    SettleLeg: _settle,
    RefundLeg: _refund,
    BatchPrepare: _prepare,
    BatchVote: _vote,
    BatchDecision: _decision,
    BatchAck: _ack,
}
