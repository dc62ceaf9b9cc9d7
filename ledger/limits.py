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

# A batch has this many postings (legs); an account may appear in several of them, and each
# posting on the legs topic is named by its index (0..BATCH_LEGS_MAX - 1).
BATCH_LEGS_MIN = 2
BATCH_LEGS_MAX = 16

HOLD_TTL_MS_MIN = 1
HOLD_TTL_MS_MAX = 30 * 24 * 3600 * 1000

# A duplicate of a command whose outcome is still in flight waits for it; at most this many do.
DEDUP_WAITERS_MAX = 8
# The command ids of at most this many duplicates of one command are indexed (QueryCommand
# answers them, a new command reusing one is ID_IN_USE); later ones are answered, not indexed.
DEDUP_DUPLICATES_INDEXED_MAX = 16

# A message in a leg (a refusal's or a no vote's) longer than this is no shard's.
LEG_MESSAGE_LENGTH_MAX = 4096

# Work done by one tick is bounded so that a tick never stalls the partition.
EXPIRATIONS_PER_TICK_MAX = 1000
# Every other input first releases at most this many holds whose expiry its clock reached:
# a hold past its expiry reserves nothing for any later input, tick or not. More due at
# once than this wait for the tick (a hold's expiry is one time: few share it).
EXPIRATIONS_PER_INPUT_MAX = 8
# Every other input forgets retention entries older than the window until this many inputs'
# worth are forgotten, so that forgetting keeps up with any input rate (each input records one
# input's worth at most). Ticks have EXPIRATIONS_PER_TICK_MAX, counted the same way.
RETENTION_FORGETS_PER_INPUT_MAX = 2
# Inputs of the same millisecond share one retention entry, up to this many (ledger/retention.py):
# a bundle's commands, or a busy partition's, write one changelog record for their retention,
# not one each. An entry is forgotten whole, so a budget is passed by less than this.
RETENTION_INPUTS_PER_ENTRY_MAX = 16

# Defaults of the configurable bounds (see ShardConfig).
# The idempotency window: commands (and finished holds, credited transfers) are remembered
# this long, never less.
DEDUP_RETENTION_MS_DEFAULT = 24 * 3600 * 1000
# A safety bound on what one shard remembers, not a window: at this many retention entries
# new commands are refused (DEDUP_WINDOW_FULL) until the window forgets the oldest. Sized
# for a day at 1,000 commands/s per worker over 8 partitions: 125 commands/s per partition,
# 2 entries each (the command's own, and the record of its credit on the destination's
# shard; the mixed workload of tests/unit/ledger/test_simulation.py makes 1.03) = 250
# entries/s x 86,400 s = 21.6 million per partition per day; x3 headroom for a skewed
# partition or bursts = 64.8 million.
_COMMANDS_PER_SECOND_PER_PARTITION = 1_000 // 8
_ENTRIES_PER_COMMAND_MAX = 2
_HEADROOM = 3
DEDUP_ENTRIES_MAX_DEFAULT = _HEADROOM * _ENTRIES_PER_COMMAND_MAX * _COMMANDS_PER_SECOND_PER_PARTITION * 86_400
BATCH_TIMEOUT_MS_DEFAULT = 30_000
