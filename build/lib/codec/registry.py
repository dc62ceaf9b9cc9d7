"""Which domain class each Avro record type is (the schemas are the source of truth;
tests/unit/test_schema_contract.py checks both sides agree field by field)."""

from __future__ import annotations

from codec.deadletter import DeadLetter
from ledger import accounts, commands, events, legs, state

RECORD_TYPES: dict[str, type] = {
    **{
        f"streamwallet.command.{cls.__name__}": cls
        for cls in (
            commands.OpenAccount,
            commands.UpdateLimits,
            commands.LockAccount,
            commands.UnlockAccount,
            commands.CloseAccount,
            commands.Deposit,
            commands.Withdraw,
            commands.Transfer,
            commands.Batch,
            commands.PlaceHold,
            commands.CaptureHold,
            commands.VoidHold,
            commands.ReverseTransfer,
            commands.QueryCommand,
        )
    },
    "streamwallet.event.AccountEvent": events.AccountEvent,
    "streamwallet.result.CommandResult": events.CommandResult,
    **{
        f"streamwallet.internal.{cls.__name__}": cls
        for cls in (
            legs.CreditLeg,
            legs.RefundLeg,
            legs.SettleLeg,
            legs.BatchPrepare,
            legs.BatchVote,
            legs.BatchDecision,
            legs.BatchAck,
            legs.Tick,
        )
    },
    **{
        f"streamwallet.state.{cls.__name__}": cls
        for cls in (
            accounts.Account,
            accounts.Hold,
            state.DedupEntry,
            state.CommandIndexEntry,
            state.OutgoingTransfer,
            state.TransferRecord,
            state.PreparedLeg,
            state.BatchState,
            state.RetentionEntry,
            state.ExpiryEntry,
            state.ShardMeta,
        )
    },
    "streamwallet.deadletter.DeadLetter": DeadLetter,
}
