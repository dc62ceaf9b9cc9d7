"""How a shard's state keys are made: one function per key format (see `state.Table`).

Keys of the ordered tables (hold expiries, batch deadlines, the retention queue) are
zero-padded numbers first, so that the store's key order is time order.
"""

from __future__ import annotations

META_KEY = "shard"  # the one ShardMeta row
NUMBER_DIGITS = 20  # zero-padding of times and retention numbers: every non-negative int64 fits


def dedup_key(routing_key: str, dedup_id: str) -> str:
    """A dedup id is the client's, scoped by the command's routing key."""
    return f"{routing_key}|{dedup_id}"


def hold_key(account_id: str, hold_id: str) -> str:
    return f"{account_id}|{hold_id}"


def prepared_key(batch_id: str, account_id: str, incarnation: int) -> str:
    """A batch leg reserved on an account, per incarnation of the batch id (0: a v1 batch)."""
    return f"{batch_id}|{account_id}" if incarnation == 0 else f"{batch_id}|{account_id}|{incarnation}"


def retention_key(number: int) -> str:
    return f"{number:0{NUMBER_DIGITS}d}"


def time_key(time_ms: int, key: str) -> str:
    return f"{time_ms:0{NUMBER_DIGITS}d}|{key}"


def time_of(time_key: str) -> int:
    return int(time_key[:NUMBER_DIGITS])
