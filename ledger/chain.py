"""The tamper-evident trail: each account's events form a SHA-256 hash chain.

Every `AccountEvent` carries `previous_hash` (the hash of the account's event before it; the
first event's is `GENESIS_HASH`) and `hash`, SHA-256 over `canonical_content(event)`: the
fields of `HASHED_FIELDS` (which include `previous_hash`) as compact JSON with sorted keys,
ASCII only, enums as their names, metadata as a JSON object with sorted keys. Changing any
hashed field of one event, deleting an event or reordering them breaks the chain at that
event: its hash no longer matches its content, or the next event's `previous_hash` no longer
matches it. The account's state keeps the hash of its newest event (`Account.last_hash`), so
the single writer chains each new event without reading the topic.

`HASHED_FIELDS` is the content version 1. It includes the account's owner and the principal
whose command caused the event: who did it is part of what must not be altered. A field added
to AccountEvent later is not hashed unless a new version says so (then old events still verify
with the fields they were hashed over). An event written before the chain existed has `hash` ""
and is not checked; an account opened before the upgrade starts its chain from `GENESIS_HASH`
at its first event after it.

`ChainCheck` verifies a stream of events, per account in order: used by `streamwallet verify`
and `streamwallet reconcile`.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from typing import Any

from ledger.accounts import AccountStatus
from ledger.errors import ErrorCode
from ledger.events import AccountEvent, EventKind
from ledger.principals import Principal

GENESIS_HASH = "0" * 64  # the previous_hash of an account's first chained event

HASHED_FIELDS: tuple[str, ...] = (
    "account_id",
    "sequence",
    "kind",
    "amount",
    "held_change",
    "currency",
    "balance",
    "held",
    "available",
    "pending_in",
    "pending_out",
    "lower_limit",
    "upper_limit",
    "status",
    "parent_account_id",
    "metadata",
    "command_id",
    "dedup_id",
    "correlation_id",
    "counterparty_account_id",
    "code",
    "occurred_at_ms",
    "owner",
    "principal",
    "previous_hash",
)


def _plain(value: Any) -> Any:
    if isinstance(value, Principal):  # who caused the event is part of what must not be altered
        return {"principal_id": value.principal_id, "roles": sorted(role.value for role in value.roles)}
    return value.value if isinstance(value, enum.Enum) else value


def _general_content(event: AccountEvent) -> bytes:
    """The canonical content by definition: the hashed fields, plain, through `json.dumps`."""
    content = {name: _plain(getattr(event, name)) for name in HASHED_FIELDS}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# The string escaper `json.dumps(..., ensure_ascii=True)` itself uses (C).
_string: Any = getattr(json.encoder, "c_encode_basestring_ascii", None) or json.encoder.py_encode_basestring_ascii


# The enums' members as JSON strings (their values), looked up rather than escaped each time.
_KINDS = {member: _string(member.value) for member in EventKind}
_STATUSES = {member: _string(member.value) for member in AccountStatus}
_CODES = {member: _string(member.value) for member in ErrorCode}


def _metadata(metadata: dict[str, str] | None) -> str:
    if not metadata:
        return "null" if metadata is None else "{}"
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# A shard's events come from few principals, and the worker's decoder hands out one object
# per principal: their JSON is kept with the object (whose id cannot be reused while it is
# kept), found by identity without hashing the principal's fields; at most PRINCIPALS_KEPT_MAX.
PRINCIPALS_KEPT_MAX = 1024
_principals: dict[int, tuple[Principal, str]] = {}


def _principal(principal: Principal) -> str:
    kept = _principals.get(id(principal))
    if kept is not None and kept[0] is principal:
        return kept[1]
    roles = ",".join(_string(role) for role in sorted(role.value for role in principal.roles))
    text = f'{{"principal_id":{_string(principal.principal_id)},"roles":[{roles}]}}'
    try:
        hash(principal)
    except TypeError:  # roles that may change (not a frozenset): not kept
        return text
    if len(_principals) >= PRINCIPALS_KEPT_MAX:
        _principals.clear()
    _principals[id(principal)] = (principal, text)
    return text


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


def canonical_content(event: AccountEvent) -> bytes:
    """What an event's hash is computed over (see the module's docstring): the bytes of
    `_general_content`, written field by field in sorted order in a third of its time (the
    single writer hashes every event it emits). The fields must have their declared types,
    as the state machine and the codec give them; one that cannot be written so (None where
    a value is due, a float) takes the general way. tests/unit/ledger/test_chain.py holds the
    two equal over generated events."""
    e = event
    try:
        text = (
            f'{{"account_id":{_string(e.account_id)},"amount":{e.amount:d},"available":{e.available:d},'
            f'"balance":{e.balance:d},"code":{"null" if e.code is None else _CODES[e.code]},'
            f'"command_id":{_string(e.command_id)},"correlation_id":{_optional(e.correlation_id)},'
            f'"counterparty_account_id":{_optional(e.counterparty_account_id)},"currency":{_string(e.currency)},'
            f'"dedup_id":{_string(e.dedup_id)},"held":{e.held:d},"held_change":{e.held_change:d},'
            f'"kind":{_KINDS[e.kind]},"lower_limit":{e.lower_limit:d},"metadata":{_metadata(e.metadata)},'
            f'"occurred_at_ms":{e.occurred_at_ms:d},"owner":{_string(e.owner)},'
            f'"parent_account_id":{_optional(e.parent_account_id)},"pending_in":{e.pending_in:d},'
            f'"pending_out":{e.pending_out:d},"previous_hash":{_string(e.previous_hash)},'
            f'"principal":{_principal(e.principal)},"sequence":{e.sequence:d},"status":{_STATUSES[e.status]},'
            f'"upper_limit":{e.upper_limit:d}}}'
        )
    except (TypeError, AttributeError, ValueError, KeyError):
        return _general_content(event)
    return text.encode("ascii")


def event_hash(event: AccountEvent) -> str:
    """SHA-256 of the event's canonical content, 64 lowercase hex digits."""
    return hashlib.sha256(canonical_content(event)).hexdigest()


def chain(event: AccountEvent, *, previous_hash: str) -> None:
    """Link a new event to the account's chain: set its previous_hash and its hash."""
    event.previous_hash = previous_hash or GENESIS_HASH
    event.hash = event_hash(event)


@dataclasses.dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where an account's trail does not hold: the event, where it was read, and why."""

    account_id: str
    sequence: int
    partition: int
    offset: int
    reason: str


@dataclasses.dataclass(slots=True)
class _Trail:
    sequence: int = 0
    hash: str = ""  # "" before the first chained event


class ChainCheck:
    """Checks events fed per account in order (a partition of the events topic holds each of
    its accounts in order): hashes, links and sequence contiguity. Memory: one small record per
    account."""

    def __init__(self) -> None:
        self._trails: dict[str, _Trail] = {}
        self.breaks: list[ChainBreak] = []
        self.events = 0
        self.unchained = 0  # written before the chain existed: not checked

    def add(self, event: AccountEvent, *, partition: int, offset: int) -> None:
        self.events += 1
        trail = self._trails.setdefault(event.account_id, _Trail())

        def broken(reason: str) -> None:
            self.breaks.append(ChainBreak(event.account_id, event.sequence, partition, offset, reason))

        if event.sequence != trail.sequence + 1:
            broken(f"sequence {event.sequence} follows {trail.sequence}")
        trail.sequence = event.sequence
        if not event.hash:
            if trail.hash:
                broken("no hash after a chained event")
            self.unchained += 1
            return
        expected_previous = trail.hash or GENESIS_HASH
        if event.previous_hash != expected_previous:
            broken(f"previous_hash {event.previous_hash[:12]}… is not the hash before it, {expected_previous[:12]}…")
        if event_hash(event) != event.hash:
            broken("hash does not match the event's content (altered)")
        trail.hash = event.hash

    @property
    def accounts(self) -> int:
        return len(self._trails)
