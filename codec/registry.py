"""Which domain class each Avro record type is (the schemas are the source of truth;
tests/unit/test_schema_contract.py checks both sides agree field by field)."""

from __future__ import annotations

from codec.bundle import CommandBundle
from codec.deadletter import DeadLetter
from ledger import audit, commands, events, legs, state

RECORD_TYPES: dict[str, type] = {
    **{f"streamwallet.command.{cls.__name__}": cls for cls in commands.COMMAND_TYPES},
    "streamwallet.command.CommandBundle": CommandBundle,
    "streamwallet.event.AccountEvent": events.AccountEvent,
    "streamwallet.result.CommandResult": events.CommandResult,
    **{f"streamwallet.internal.{cls.__name__}": cls for cls in legs.LEG_TYPES},
    **{f"streamwallet.state.{cls.__name__}": cls for cls in state.STATE_RECORD_TYPES},
    "streamwallet.deadletter.DeadLetter": DeadLetter,
    "streamwallet.audit.AuditEvent": audit.AuditEvent,
}
