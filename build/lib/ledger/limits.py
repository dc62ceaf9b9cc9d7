"""Every bound the ledger enforces, as a named constant with its unit last."""

from __future__ import annotations

# Amounts and balances are signed 64-bit integers of minor units: |value| <= AMOUNT_MAX.
AMOUNT_MAX = 2**63 - 1

ACCOUNT_ID_LENGTH_MAX = 64
COMMAND_ID_LENGTH_MAX = 64
DEDUP_ID_LENGTH_MAX = 128
REFERENCE_ID_LENGTH_MAX = 64  # hold, batch and transfer ids chosen by clients
REASON_LENGTH_MAX = 256

METADATA_ENTRIES_MAX = 16
METADATA_KEY_LENGTH_MAX = 64
METADATA_VALUE_LENGTH_MAX = 256

BATCH_LEGS_MIN = 2
BATCH_LEGS_MAX = 16

HOLD_TTL_MS_MIN = 1
HOLD_TTL_MS_MAX = 30 * 24 * 3600 * 1000

# A duplicate of a command whose outcome is still in flight waits for it; at most this many do.
DEDUP_WAITERS_MAX = 8

# Work done by one tick is bounded so that a tick never stalls the partition.
EXPIRATIONS_PER_TICK_MAX = 1000

# Defaults of the configurable bounds (see ShardConfig).
DEDUP_RETENTION_MS_DEFAULT = 24 * 3600 * 1000
DEDUP_ENTRIES_MAX_DEFAULT = 1_000_000
BATCH_TIMEOUT_MS_DEFAULT = 30_000
