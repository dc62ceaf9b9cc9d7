"""Reads over the query side's tables; every function takes a client and the database."""

from __future__ import annotations

from typing import Any

BALANCE_COLUMNS = [
    "account_id",
    "sequence",
    "currency",
    "status",
    "balance",
    "held",
    "available",
    "pending_in",
    "pending_out",
    "lower_limit",
    "upper_limit",
    "parent_account_id",
    "updated_at",
]


def balance(client: Any, database: str, account_id: str) -> dict[str, Any] | None:
    """The account as of the latest event the view holds (argMax: duplicates cannot matter)."""
    rows = client.query(
        f"""
        SELECT account_id, max(sequence), argMax(currency, sequence), argMax(status, sequence),
               argMax(balance, sequence), argMax(held, sequence), argMax(available, sequence),
               argMax(pending_in, sequence), argMax(pending_out, sequence), argMax(lower_limit, sequence),
               argMax(upper_limit, sequence), argMax(parent_account_id, sequence), max(occurred_at)
        FROM {database}.account_events
        WHERE account_id = %(account_id)s
        GROUP BY account_id
        """,
        parameters={"account_id": account_id},
    ).result_rows
    if not rows:
        return None
    record = dict(zip(BALANCE_COLUMNS, rows[0], strict=True))
    record["updated_at"] = record["updated_at"].isoformat()
    return record


def balances(client: Any, database: str) -> dict[str, tuple[int, int]]:
    """account_id -> (sequence, balance) for every account (tests and reconciliation)."""
    rows = client.query(
        f"SELECT account_id, max(sequence), argMax(balance, sequence) FROM {database}.account_events "
        "GROUP BY account_id"
    ).result_rows
    return {account_id: (int(sequence), int(amount)) for account_id, sequence, amount in rows}


def event_count(client: Any, database: str) -> int:
    """Distinct (account, sequence) pairs: what a duplicate-free history holds."""
    rows = client.query(f"SELECT count() FROM (SELECT DISTINCT account_id, sequence FROM {database}.account_events)")
    return int(rows.result_rows[0][0])
