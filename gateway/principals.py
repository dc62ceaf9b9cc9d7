"""The verified principal on every command the gateway makes, and who sent what.

The ledger's command dataclasses are gaining a `principal` field (ledger/principals.py
`Principal`), set by the gateway from the verified credential and never by a client: a
body that names one is refused (PRINCIPAL_IN_BODY). Until the field exists, `build`
makes the command without it; from then on, with it: every command the gateway produces
is made here, so nothing else changes when it lands.

Who sent a command, for GET /v1/commands/{id}: the ledger's result will say it (the
`principal` of the queried `CommandResult`); until it does, `RecentSenders` remembers the
sender of the latest `RECENT_SUBMISSIONS_MAX` submits this gateway produced.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from gateway.bounded import BoundedLru
from ledger import commands
from ledger.events import CommandResult
from ledger.principals import Principal

PRINCIPAL_FIELD = "principal"
RECENT_SUBMISSIONS_MAX = 100_000  # (routing key, command id) -> sender, the most recent
C = TypeVar("C")


def carries_principal(cls: type[Any]) -> bool:
    """Does this dataclass (a command type, CommandResult) have the principal field yet?"""
    return any(field.name == PRINCIPAL_FIELD for field in dataclasses.fields(cls))


def client_fields(cls: type[commands.Command]) -> tuple[dataclasses.Field[Any], ...]:
    """The fields of a command a client's body may set: all but the principal."""
    return tuple(field for field in dataclasses.fields(cls) if field.name != PRINCIPAL_FIELD)


def build(cls: type[C], *, principal: Principal, **values: Any) -> C:
    """A command made by the gateway, with the verified principal on it once commands carry one."""
    if carries_principal(cls):
        values[PRINCIPAL_FIELD] = principal
    return cls(**values)


def sender_of(result: CommandResult) -> str | None:
    """The principal id a result says sent its command, once results carry it."""
    principal = getattr(result, PRINCIPAL_FIELD, None)
    if isinstance(principal, Principal):
        return principal.principal_id
    return principal if isinstance(principal, str) else None


class RecentSenders:
    """Who sent the commands this gateway produced lately, by (routing key, command id):
    the first sender of an id stays (a second principal reusing it is not recorded), and
    an id the ledger says belongs to an earlier command (ID_IN_USE) is forgotten."""

    def __init__(self, entries_max: int = RECENT_SUBMISSIONS_MAX) -> None:
        self.senders: BoundedLru[tuple[str, str], str] = BoundedLru(entries_max)

    def record(self, command: commands.Command, principal: Principal) -> None:
        key = (command.routing_key, command.command_id)
        if self.senders.get(key) is None:
            self.senders.put(key, principal.principal_id)

    def forget(self, command: commands.Command, principal: Principal) -> None:
        key = (command.routing_key, command.command_id)
        if self.senders.get(key) == principal.principal_id:
            self.senders.pop(key)

    def sender(self, routing_key: str, command_id: str) -> str | None:
        return self.senders.get((routing_key, command_id))
