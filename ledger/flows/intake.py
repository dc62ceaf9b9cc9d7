"""How a client command enters the shard: routing, dedup, validation, then its flow.

In order: the envelope (well-formed ids) and the routing key (the command belongs to
this shard), then the principal's authorization (ledger/authorization.py: its roles, the
owners of the accounts it debits) — a command failing these is answered but not
remembered (a denied one learns nothing of what another principal sent); the dedup memory
(a repeat is answered from it, waits for an original still in flight, or is refused as
a conflict); the command index (a command id used by another remembered command is
refused, not remembered); room in the idempotency window (a full window refuses a new
command, DEDUP_WINDOW_FULL, not remembered); the body's stateless checks; and finally the
command's flow. Whatever the flow decides is remembered under the dedup key and the
command id for the retention window (`ledger.retention`).

A duplicate's own command id is indexed too (up to DEDUP_DUPLICATES_INDEXED_MAX per
command): a query finds it (a duplicate of which command, with the result it got), a new
command using it is ID_IN_USE, and it is forgotten with the command it duplicated.

A command rejected by its body's stateless checks (the message itself: MALFORMED,
INVALID_AMOUNT, …) is remembered like any other, but it cannot have changed anything and a
retry of it can only be rejected again: so a command with the same dedup id and another
payload — the corrected one, under a command id of its own — takes the dedup id over
instead of being a DEDUP_CONFLICT. An identical retry is still answered with the first
rejection; the malformed command's id stays in use for its window (its rejection was its
one answer) and a query for it no longer finds anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
from collections.abc import Callable
from typing import Any

from ledger import retention
from ledger.audit import AuditEvent, AuditOutcome, AuditSource
from ledger.authorization import authorize, is_privileged
from ledger.commands import Command, MutatingCommand, QueryCommand, check_envelope, validate_body
from ledger.decision import Decision
from ledger.errors import ErrorCode, Rejection
from ledger.events import CommandResult
from ledger.keys import dedup_key
from ledger.limits import DEDUP_DUPLICATES_INDEXED_MAX, DEDUP_WAITERS_MAX
from ledger.principals import Principal
from ledger.state import CommandIndexEntry, DedupEntry, Table

# A command's flow: the final result, or None while the flow is in flight across shards.
CommandFlow = Callable[[Decision, Any], CommandResult | None]


def check_routing(decision: Decision, command: Command) -> Rejection | None:
    """Ids well formed, and the command on the shard that owns its routing key: a command
    produced with another key (or another partitioner) must not touch an account here."""
    rejection = check_envelope(command)
    if rejection is None and not decision.is_local(command.routing_key):
        rejection = Rejection(
            ErrorCode.MALFORMED,
            f"the command for {command.routing_key!r} arrived on a partition that does not own it: produce it with "
            "that key and Kafka's default (murmur2) partitioner",
        )
    return rejection


def check_authorized(decision: Decision, command: Command) -> Rejection | None:
    """May the command's principal send it (ledger/authorization.py), as this shard's state says."""

    def owner_of(account_id: str) -> str | None:
        account = decision.account(account_id)
        return None if account is None else account.owner

    def sender() -> str | None:
        return None if not isinstance(command, QueryCommand) else _sender_of(decision, command)

    rejection = authorize(command, owner_of=owner_of, is_local=decision.is_local, sender=sender)
    audit(decision, command, rejection=rejection)
    return rejection


def audit(decision: Decision, command: Command, *, rejection: Rejection | None) -> None:
    """On the audit trail: a privileged command, allowed or not, and any denied command."""
    if rejection is None and not is_privileged(type(command)):
        return
    record_audit(
        decision,
        principal=command.principal,
        action=type(command).__name__,
        account_id=command.routing_key,
        command_id=command.command_id,
        rejection=rejection,
    )


def record_audit(
    decision: Decision,
    *,
    principal: Principal,
    action: str,
    account_id: str,
    command_id: str,
    rejection: Rejection | None,
) -> None:
    decision.outcome.audit.append(
        AuditEvent(
            principal=principal,
            action=action,
            account_id=account_id,
            command_id=command_id,
            outcome=AuditOutcome.ALLOWED if rejection is None else AuditOutcome.DENIED,
            code="" if rejection is None else rejection.code.value,
            message="" if rejection is None else rejection.message,
            source=AuditSource.SHARD,
            occurred_at_ms=decision.now,
        )
    )


def _sender_of(decision: Decision, query: QueryCommand) -> str | None:
    """Who sent the command a query asks about, if this shard remembers it under the query's key."""
    index: CommandIndexEntry | None = decision.store.get(Table.COMMANDS, query.target_command_id)
    if index is None or not index.dedup_key.startswith(f"{query.account_id}|"):
        return None
    entry: DedupEntry | None = decision.store.get(Table.DEDUP, index.dedup_key)
    return None if entry is None else entry.principal_id


def handle_command(decision: Decision, command: MutatingCommand, *, flow: CommandFlow) -> None:
    rejection = check_routing(decision, command) or check_authorized(decision, command)
    if rejection is not None:  # not remembered: its dedup id or its shard cannot be trusted, or it was denied
        decision.outcome.results.append(decision.result(command, rejection=rejection))
        return
    key = dedup_key(command.routing_key, command.dedup_id)
    digest = payload_digest(command)
    entry: DedupEntry | None = decision.store.get(Table.DEDUP, key)
    if entry is not None and not (entry.malformed and entry.digest != digest):
        _answer_duplicate(decision, command, key, entry, digest)
        return
    # From here `entry`, if any, is a malformed command's, which this one corrects.
    indexed: CommandIndexEntry | None = decision.store.get(Table.COMMANDS, command.command_id)
    if indexed is not None:  # not remembered either: the id belongs to the earlier command
        decision.outcome.results.append(
            decision.result(
                command,
                rejection=Rejection(
                    ErrorCode.ID_IN_USE,
                    f"command id {command.command_id} was used by another command (dedup id "
                    f"{indexed.dedup_key.rsplit('|', 1)[-1]!r}) within the retention window",
                ),
            )
        )
        return
    rejection = _check_window_room(decision)
    if rejection is not None:  # not remembered: there is no room, and a retry later may find some
        decision.outcome.results.append(decision.result(command, rejection=rejection))
        return
    if entry is not None:
        _forget_duplicates(decision, entry)
    rejection = validate_body(command)
    result = decision.result(command, rejection=rejection) if rejection is not None else flow(decision, command)
    _remember(decision, command, key=key, digest=digest, result=result, malformed=rejection is not None)
    if result is not None:
        decision.outcome.results.append(result)


def _check_window_room(decision: Decision) -> Rejection | None:
    """A new command is remembered for the whole window, so it is taken only while the
    shard remembers fewer than `retained_entries_max` entries; nothing is ever forgotten
    early to make room."""
    retained = retention.size(decision.meta)
    entries_max = decision.config.retained_entries_max
    if retained < entries_max:
        return None
    oldest = retention.oldest(decision.store, decision.meta)
    wait_ms = 0 if oldest is None else max(0, oldest.recorded_at_ms + decision.config.retention_ms - decision.now)
    return Rejection(
        ErrorCode.DEDUP_WINDOW_FULL,
        f"this partition remembers {retained} commands and records for the {decision.config.retention_ms} ms "
        f"idempotency window, at most {entries_max}: the oldest leaves in {wait_ms} ms (once settled); retry then",
    )


def _remember(
    decision: Decision,
    command: MutatingCommand,
    *,
    key: str,
    digest: bytes,
    result: CommandResult | None,
    malformed: bool,
) -> None:
    """The dedup entry and the command index, kept for the retention window."""
    decision.store.put(
        Table.DEDUP,
        key,
        DedupEntry(
            digest=digest,
            command_id=command.command_id,
            command_type=type(command).__name__,
            recorded_at_ms=decision.now,
            result=result,
            waiters=[],
            duplicates=[],
            malformed=malformed,
            principal_id=command.principal.principal_id,
        ),
    )
    decision.store.put(Table.COMMANDS, command.command_id, CommandIndexEntry(dedup_key=key))
    decision.retain(Table.DEDUP, key)
    decision.retain(Table.COMMANDS, command.command_id)


def _answer_duplicate(decision: Decision, command: MutatingCommand, key: str, entry: DedupEntry, digest: bytes) -> None:
    if entry.digest != digest:
        decision.outcome.results.append(
            decision.result(
                command,
                rejection=Rejection(
                    ErrorCode.DEDUP_CONFLICT,
                    f"dedup id {command.dedup_id!r} was used by command {entry.command_id} with another payload",
                ),
            )
        )
    elif entry.result is not None:
        decision.outcome.results.append(dataclasses.replace(entry.result, command_id=command.command_id, replayed=True))
        if _index_duplicate(decision, command, key, entry):
            decision.store.put(Table.DEDUP, key, entry)
    elif len(entry.waiters) >= DEDUP_WAITERS_MAX:
        decision.outcome.results.append(
            decision.result(
                command,
                rejection=Rejection(
                    ErrorCode.DUPLICATE_BACKLOG,
                    f"{DEDUP_WAITERS_MAX} duplicates already wait for command {entry.command_id}",
                ),
            )
        )
    else:
        entry.waiters.append(command.command_id)
        _index_duplicate(decision, command, key, entry)
        decision.store.put(Table.DEDUP, key, entry)


def _index_duplicate(decision: Decision, command: MutatingCommand, key: str, entry: DedupEntry) -> bool:
    """Index a duplicate's own command id under its original's dedup key, unless it is the
    original's, already indexed, taken by another command, or one too many. Returns
    whether `entry` changed (the caller stores it)."""
    command_id = command.command_id
    if (
        command_id == entry.command_id
        or command_id in entry.duplicates
        or len(entry.duplicates) >= DEDUP_DUPLICATES_INDEXED_MAX
        or decision.store.get(Table.COMMANDS, command_id) is not None
    ):
        return False
    decision.store.put(Table.COMMANDS, command_id, CommandIndexEntry(dedup_key=key))
    entry.duplicates.append(command_id)
    return True


def _forget_duplicates(decision: Decision, entry: DedupEntry) -> None:
    """A malformed command's dedup id is taken over: the ids of its duplicates no longer
    answer for anything."""
    for command_id in entry.duplicates:
        decision.store.delete(Table.COMMANDS, command_id)


# -- the payload's fingerprint ---------------------------------------------------------------


# Fields added to a command after v1, with the value a command written without them decodes
# to: left out of the digest while they hold it, so that a v1 command retried across an
# upgrade still matches the digest its first attempt was remembered with.
FIELDS_ADDED_AFTER_V1: dict[str, dict[str, object]] = {
    "CaptureHold": {"currency": ""},
    "UpdateLimits": {"currency": ""},
    "OpenAccount": {"owner": ""},
}
# On every command: the sender, fingerprinted by its id alone (a retry after the principal
# gained or lost a role is the same command; another principal's is not), "" when anonymous.
FIELDS_ADDED_TO_EVERY_COMMAND: dict[str, object] = {"principal": ""}


def payload_digest(command: MutatingCommand) -> bytes:
    """Fingerprint of everything but the command id: a retry must match it exactly."""
    plan = _DIGEST_PLANS.get(type(command))
    if plan is None:
        plan = _DIGEST_PLANS[type(command)] = _digest_plan(type(command))
    values = list(plan.values(command))
    for index in plan.dicts:
        if isinstance(values[index], dict):
            values[index] = sorted(values[index].items())
    for index in plan.leg_lists:
        if isinstance(values[index], list):
            values[index] = [
                (getattr(leg, "account_id", leg), getattr(leg, "amount", None), getattr(leg, "currency", None))
                for leg in values[index]
            ]
    for index in plan.principals:
        values[index] = getattr(values[index], "principal_id", values[index])
    for index, unstated in reversed(plan.added):  # from the end: indexes stay valid
        if values[index] == unstated:
            del values[index]
    return hashlib.blake2b(repr((plan.name, values)).encode(), digest_size=16).digest()


@dataclasses.dataclass(frozen=True, slots=True)
class _DigestPlan:
    name: str
    values: Callable[[Any], tuple[Any, ...]]
    dicts: tuple[int, ...]
    leg_lists: tuple[int, ...]
    principals: tuple[int, ...]
    added: tuple[tuple[int, object], ...]  # (index, value when not stated) of fields added after v1


_DIGEST_PLANS: dict[type, _DigestPlan] = {}  # a cache of what each command type's digest reads


def _digest_plan(cls: type) -> _DigestPlan:
    fields = [field for field in dataclasses.fields(cls) if field.name != "command_id"]
    names = [field.name for field in fields]
    getter = operator.attrgetter(*names)
    added = {**FIELDS_ADDED_AFTER_V1.get(cls.__name__, {}), **FIELDS_ADDED_TO_EVERY_COMMAND}
    return _DigestPlan(
        name=cls.__name__,
        values=(lambda command: (getter(command),)) if len(names) == 1 else getter,
        dicts=tuple(index for index, name in enumerate(names) if name == "metadata"),
        leg_lists=tuple(index for index, name in enumerate(names) if name == "legs"),
        principals=tuple(index for index, name in enumerate(names) if name == "principal"),
        added=tuple((index, added[name]) for index, name in enumerate(names) if name in added),
    )
