"""Reads over the query side's tables: every function takes a client and the database.

Every read goes through FINAL, so rows a redelivered batch wrote twice count once.
Money is Int64 minor units throughout; times are milliseconds since the epoch (UTC).

A `Cut` restricts a read to the events below given offsets of the events topic
(partition -> first offset excluded). The sink records cuts taken from the topic's last
stable offsets once it has passed them: such a cut holds every transaction that
committed before it was taken and nothing of the others, so a cross-partition flow is
never seen credited without its debit, and conservation holds exactly at it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from ledger.events import EventKind

HISTORY_PAGE_EVENTS_DEFAULT = 100
HISTORY_PAGE_EVENTS_MAX = 1000
ACCOUNT_PAGE_ACCOUNTS_DEFAULT = 100
ACCOUNT_PAGE_ACCOUNTS_MAX = 1000
# The balances view's column naming an account's owner (a principal id), once the events
# carry it; without the column an `owner` filter cannot be answered.
OWNER_COLUMN = "owner"
HIERARCHY_DEPTH_MAX = 32  # levels below an account a roll-up follows; deeper levels are reported, not summed

Cut = Mapping[int, int]

DEBITED = (EventKind.TRANSFER_DEBITED, EventKind.HOLD_CAPTURED, EventKind.REVERSAL_DEBITED)
CREDITED = (EventKind.TRANSFER_CREDITED, EventKind.CAPTURE_CREDITED, EventKind.REVERSAL_CREDITED)
SETTLED = (EventKind.TRANSFER_SETTLED, EventKind.CAPTURE_SETTLED, EventKind.REVERSAL_SETTLED)
BATCH_FINISHED = (EventKind.BATCH_COMMITTED, EventKind.BATCH_RELEASED)

STATE_COLUMNS = [
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
    "owner",  # the principal id of its holder ("": none, or not known before schema version 3)
]
HISTORY_COLUMNS = [
    "sequence",
    "kind",
    "amount",
    "held_change",
    "balance",
    "held",
    "available",
    "pending_in",
    "pending_out",
    "status",
    "correlation_id",
    "counterparty_account_id",
    "code",
    "command_id",
    "dedup_id",
    "metadata",
    "principal_id",  # who caused the event ("" for one written before events carried it)
]


def _kinds(kinds: tuple[EventKind, ...]) -> str:
    return "(" + ", ".join(f"'{kind.value}'" for kind in kinds) + ")"


def cut_condition(cut: Cut | None) -> str:
    """SQL that keeps the events below `cut` (offsets are ints: safe to inline)."""
    if cut is None:
        return "1"
    if not cut:
        return "0"
    ends = [int(cut.get(partition, 0)) for partition in range(max(cut) + 1)]
    return f"kafka_offset < [{', '.join(map(str, ends))}][kafka_partition + 1]"


def _iso(milliseconds: int) -> str:
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _state(row: tuple[Any, ...], updated_at_ms: int) -> dict[str, Any]:
    record = dict(zip(STATE_COLUMNS, row, strict=True))
    record["sequence"] = int(record["sequence"])
    record["updated_at_ms"] = int(updated_at_ms)
    record["updated_at"] = _iso(int(updated_at_ms))
    return record


# -- balances ---------------------------------------------------------------------------------


def latest_state(row: list[Any]) -> dict[str, Any]:
    """`balance`'s answer from an account_latest row as the sink wrote it (STATE_COLUMNS, then
    updated_at in milliseconds): what `balance` reads back once that row is the newest."""
    return _state(tuple(row[:-1]), row[-1])


def balance(client: Any, database: str, account_id: str) -> dict[str, Any] | None:
    """The account after the newest event the view holds: balance, available, holds, in flight."""
    rows = client.query(
        f"""
        SELECT {", ".join(STATE_COLUMNS)}, toUnixTimestamp64Milli(updated_at)
        FROM {database}.account_latest FINAL
        WHERE account_id = %(account_id)s
        """,
        parameters={"account_id": account_id},
    ).result_rows
    return _state(rows[0][:-1], rows[0][-1]) if rows else None


def balance_as_of(
    client: Any, database: str, account_id: str, *, sequence: int | None = None, at_ms: int | None = None
) -> dict[str, Any] | None:
    """The account right after its event `sequence`, or after its newest event at or before
    `at_ms`; None if it had no event by then."""
    assert (sequence is None) != (at_ms is None), "as of a sequence or a time, one of them"
    condition = (
        "sequence <= %(sequence)s" if sequence is not None else "occurred_at <= fromUnixTimestamp64Milli(%(at)s)"
    )
    rows = client.query(
        f"""
        SELECT {", ".join(STATE_COLUMNS)}, toUnixTimestamp64Milli(occurred_at)
        FROM {database}.account_events FINAL
        WHERE account_id = %(account_id)s AND {condition}
        ORDER BY sequence DESC
        LIMIT 1
        """,
        parameters={"account_id": account_id, "sequence": sequence, "at": at_ms},
    ).result_rows
    return _state(rows[0][:-1], rows[0][-1]) if rows else None


# -- account listing ----------------------------------------------------------------------------


class OwnerFilterUnavailableError(ValueError):
    """An `owner` filter asked of a balances view that has no owner column."""


@dataclasses.dataclass(frozen=True, slots=True)
class AccountPage:
    accounts: list[dict[str, Any]]
    last_account_id: str | None  # the next page starts after it; None: this page is the last


def has_owner_column(client: Any, database: str) -> bool:
    rows = client.query(
        "SELECT count() FROM system.columns WHERE database = %(database)s AND table = 'account_latest' "
        "AND name = %(column)s",
        parameters={"database": database, "column": OWNER_COLUMN},
    ).result_rows
    return bool(rows and rows[0][0])


def account_page(
    client: Any,
    database: str,
    *,
    limit: int = ACCOUNT_PAGE_ACCOUNTS_DEFAULT,
    after: str | None = None,
    owner: str | None = None,
) -> AccountPage:
    """Accounts in the order of their ids (bytes, ascending), each as `balance` answers it,
    from `after` (exclusive); only `owner`'s if given. The cursor is an account id, so the
    pages stay stable while accounts are opened: a new one shows on a later page or not at
    all, never twice."""
    if not 1 <= limit <= ACCOUNT_PAGE_ACCOUNTS_MAX:
        raise ValueError(f"limit must be within 1..{ACCOUNT_PAGE_ACCOUNTS_MAX}")
    conditions = ["1" if after is None else "account_id > %(after)s"]
    if owner is not None:
        if not has_owner_column(client, database):
            raise OwnerFilterUnavailableError("the views do not carry account owners yet: owner cannot filter")
        conditions.append(f"{OWNER_COLUMN} = %(owner)s")
    rows = client.query(
        f"""
        SELECT {", ".join(STATE_COLUMNS)}, toUnixTimestamp64Milli(updated_at)
        FROM {database}.account_latest FINAL
        WHERE {" AND ".join(conditions)}
        ORDER BY account_id
        LIMIT %(rows)s
        """,
        parameters={"after": after, "owner": owner, "rows": limit + 1},
    ).result_rows
    accounts = [_state(row[:-1], row[-1]) for row in rows[:limit]]
    more = len(rows) > limit
    return AccountPage(accounts=accounts, last_account_id=accounts[-1]["account_id"] if more else None)


# -- history ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryPage:
    events: list[dict[str, Any]]
    next_cursor: int | None  # pass as `before` (newest first) or `after` (oldest first) for the next page


def history(
    client: Any,
    database: str,
    account_id: str,
    *,
    limit: int = HISTORY_PAGE_EVENTS_DEFAULT,
    before: int | None = None,
    after: int | None = None,
) -> HistoryPage:
    """A page of the account's events with the running balance (`balance` after each event).

    Newest first by default, from `before` (exclusive) down; with `after`, oldest first
    from `after` (exclusive) up. The cursor is a sequence number, so pages stay stable
    while new events arrive."""
    assert 1 <= limit <= HISTORY_PAGE_EVENTS_MAX, f"limit must be within 1..{HISTORY_PAGE_EVENTS_MAX}"
    assert before is None or after is None, "one cursor at a time"
    if after is not None:
        condition, order = "sequence > %(cursor)s", "ASC"
    elif before is not None:
        condition, order = "sequence < %(cursor)s", "DESC"
    else:
        condition, order = "1", "DESC"
    rows = client.query(
        f"""
        SELECT {", ".join(HISTORY_COLUMNS)}, toUnixTimestamp64Milli(occurred_at)
        FROM {database}.account_events FINAL
        WHERE account_id = %(account_id)s AND {condition}
        ORDER BY sequence {order}
        LIMIT %(rows)s
        """,
        parameters={"account_id": account_id, "cursor": before if after is None else after, "rows": limit + 1},
    ).result_rows
    events = []
    for row in rows[:limit]:
        event = dict(zip(HISTORY_COLUMNS, row[:-1], strict=True))
        event["sequence"] = int(event["sequence"])
        event["occurred_at_ms"] = int(row[-1])
        event["occurred_at"] = _iso(int(row[-1]))
        events.append(event)
    more = len(rows) > limit
    return HistoryPage(events=events, next_cursor=events[-1]["sequence"] if more else None)


# -- turnover -----------------------------------------------------------------------------------


def daily_turnover(
    client: Any,
    database: str,
    account_id: str,
    *,
    from_day: datetime.date | None = None,
    to_day: datetime.date | None = None,
) -> list[dict[str, Any]]:
    """Per UTC day with events: money in (credits), money out (debits), turnover (their sum),
    net change, closing balance and the number of events."""
    rows = client.query(
        f"""
        SELECT toDate(occurred_at) AS day, count(), sumIf(amount, amount > 0), -sumIf(amount, amount < 0),
               sum(amount), argMax(balance, sequence), countIf(amount != 0)
        FROM {database}.account_events FINAL
        WHERE account_id = %(account_id)s AND day >= %(from_day)s AND day <= %(to_day)s
        GROUP BY day
        ORDER BY day
        """,
        parameters={
            "account_id": account_id,
            "from_day": from_day or datetime.date(1970, 1, 1),
            "to_day": to_day or datetime.date(2149, 6, 6),  # the last Date
        },
    ).result_rows
    return [
        {
            "day": day.isoformat(),
            "events": int(events),
            "money_events": int(money_events),
            "credits": int(credits),
            "debits": int(debits),
            "turnover": int(credits) + int(debits),
            "net": int(net),
            "closing_balance": int(closing),
        }
        for day, events, credits, debits, net, closing, money_events in rows
    ]


# -- per-currency totals and conservation ------------------------------------------------------


def totals(client: Any, database: str, *, cut: Cut | None = None) -> list[dict[str, Any]]:
    """Per currency: the sums of every account's state and the external flows, and whether
    they net: balance + pending_out - in flight == deposits - withdrawals.

    In flight are credits of cross-partition flows whose source has not settled yet (the
    money shows both as the destination's balance and the source's pending_out) and the
    committed legs of batches not finished on every account. Finished batches must net to
    zero: any residue shows as drift. Exact at a consistent cut (see the module doc)."""
    where = cut_condition(cut)
    table = f"{database}.account_events"
    states = client.query(
        f"""
        SELECT currency, count(), sum(balance), sum(held), sum(available), sum(pending_in), sum(pending_out)
        FROM (
            SELECT account_id, argMax(currency, sequence) AS currency, argMax(balance, sequence) AS balance,
                   argMax(held, sequence) AS held, argMax(available, sequence) AS available,
                   argMax(pending_in, sequence) AS pending_in, argMax(pending_out, sequence) AS pending_out
            FROM {table} FINAL
            WHERE {where}
            GROUP BY account_id
        )
        GROUP BY currency
        """
    ).result_rows
    flows = client.query(
        f"""
        SELECT currency, count(), sumIf(amount, kind = 'DEPOSITED'), -sumIf(amount, kind = 'WITHDRAWN')
        FROM {table} FINAL
        WHERE {where}
        GROUP BY currency
        """
    ).result_rows
    credits_in_flight = client.query(
        f"""
        SELECT currency, sum(credited)
        FROM (
            SELECT correlation_id, any(currency) AS currency, sumIf(amount, kind IN {_kinds(CREDITED)}) AS credited,
                   countIf(kind IN {_kinds(SETTLED)}) AS settled, uniqExact(kafka_partition) AS partitions
            FROM {table} FINAL
            WHERE {where} AND correlation_id IS NOT NULL AND kind IN {_kinds(DEBITED + CREDITED + SETTLED)}
            GROUP BY correlation_id
        )
        WHERE credited != 0 AND settled = 0 AND partitions > 1
        GROUP BY currency
        """
    ).result_rows
    batches_in_flight = client.query(
        f"""
        SELECT currency, sum(committed)
        FROM (
            SELECT correlation_id, currency, sum(committed) AS committed, max(undecided) AS open
            FROM (
                SELECT correlation_id, account_id, currency,
                       sumIf(amount, kind = 'BATCH_COMMITTED') AS committed,
                       argMax(kind, sequence) = 'BATCH_PREPARED' AS undecided
                FROM {table} FINAL
                WHERE {where} AND kind IN {_kinds((EventKind.BATCH_PREPARED, *BATCH_FINISHED))}
                GROUP BY correlation_id, account_id, currency
            )
            GROUP BY correlation_id, currency
        )
        WHERE open
        GROUP BY currency
        """
    ).result_rows
    credits = {currency: int(amount) for currency, amount in credits_in_flight}
    batches = {currency: int(amount) for currency, amount in batches_in_flight}
    flow_by_currency = {currency: (int(events), int(dep), int(wd)) for currency, events, dep, wd in flows}
    result = []
    for currency, accounts, balance_sum, held, available, pending_in, pending_out in sorted(states):
        events, deposits, withdrawals = flow_by_currency.get(currency, (0, 0, 0))
        in_flight = credits.get(currency, 0) + batches.get(currency, 0)
        result.append(
            {
                "currency": currency,
                "accounts": int(accounts),
                "events": events,
                "balance": int(balance_sum),
                "held": int(held),
                "available": int(available),
                "pending_in": int(pending_in),
                "pending_out": int(pending_out),
                "deposits": deposits,
                "withdrawals": withdrawals,
                "external_net": deposits - withdrawals,
                "credits_in_flight": credits.get(currency, 0),
                "batches_in_flight": batches.get(currency, 0),
                "drift": int(balance_sum) + int(pending_out) - in_flight - (deposits - withdrawals),
            }
        )
    return result


# -- hierarchy ----------------------------------------------------------------------------------


def rollup(client: Any, database: str, account_id: str, *, own: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The account with its descendants of any depth summed in, per currency.

    Follows parent -> child edges down to HIERARCHY_DEPTH_MAX levels; an edge back to an
    account already on the path (a cycle: parents are not checked when an account opens)
    is reported and not followed, and accounts below the depth bound are reported, not
    summed. `own` is the account's balance when the caller has just read it."""
    if own is None:
        own = balance(client, database, account_id)
    if own is None:
        return None
    nodes = client.query(
        f"""
        WITH RECURSIVE tree AS (
            SELECT %(root)s AS account_id, 0 AS depth, [%(root)s] AS path, 0 AS cycle
            UNION ALL
            SELECT edge.account_id, tree.depth + 1, arrayPushBack(tree.path, edge.account_id),
                   has(tree.path, edge.account_id)
            FROM {database}.account_tree AS edge FINAL
            INNER JOIN tree ON edge.parent_account_id = tree.account_id
            WHERE tree.depth <= {HIERARCHY_DEPTH_MAX} AND tree.cycle = 0
        )
        SELECT account_id, depth, cycle FROM tree
        """,
        parameters={"root": account_id},
    ).result_rows
    members = [node for node, depth, cycle in nodes if not cycle and depth <= HIERARCHY_DEPTH_MAX]
    cycles = sorted(node for node, _, cycle in nodes if cycle)
    too_deep = sorted(node for node, depth, cycle in nodes if not cycle and depth > HIERARCHY_DEPTH_MAX)
    sums = client.query(
        f"""
        SELECT currency, count(), sum(balance), sum(held), sum(available), sum(pending_in), sum(pending_out)
        FROM {database}.account_latest FINAL
        WHERE account_id IN %(members)s
        GROUP BY currency
        ORDER BY currency
        """,
        parameters={"members": members},
    ).result_rows
    return {
        "account": own,
        "descendants": len(members) - 1,
        "depth": max((depth for _, depth, cycle in nodes if not cycle and depth <= HIERARCHY_DEPTH_MAX), default=0),
        "by_currency": [
            {
                "currency": currency,
                "accounts": int(accounts),
                "balance": int(balance_sum),
                "held": int(held),
                "available": int(available),
                "pending_in": int(pending_in),
                "pending_out": int(pending_out),
            }
            for currency, accounts, balance_sum, held, available, pending_in, pending_out in sums
        ],
        "cycles_at": cycles,
        "beyond_depth_max": too_deep,
        "depth_max": HIERARCHY_DEPTH_MAX,
    }


# -- for reconciliation and tests ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AccountSummary:
    """What the view holds of one account, condensed: comparable with a replay of the topic."""

    events: int
    first_sequence: int
    last_sequence: int
    amount_sum: int  # the net of every event: equals the final balance when no event is missing
    balance_sum: int  # a corrupted running balance anywhere changes it
    held_change_sum: int
    state: dict[str, Any]  # after the newest event


SUMMARY_STATE = ["currency", "status", "balance", "held", "available", "pending_in", "pending_out"]


def account_summaries(client: Any, database: str, *, cut: Cut | None = None) -> dict[str, AccountSummary]:
    rows = client.query(
        f"""
        SELECT account_id, count(), min(sequence), max(sequence), sum(amount), sum(balance), sum(held_change),
               {", ".join(f"argMax({column}, sequence)" for column in SUMMARY_STATE)}
        FROM {database}.account_events FINAL
        WHERE {cut_condition(cut)}
        GROUP BY account_id
        """
    ).result_rows
    return {
        row[0]: AccountSummary(
            events=int(row[1]),
            first_sequence=int(row[2]),
            last_sequence=int(row[3]),
            amount_sum=int(row[4]),
            balance_sum=int(row[5]),
            held_change_sum=int(row[6]),
            state=dict(zip(SUMMARY_STATE, row[7:], strict=True)),
        )
        for row in rows
    }


def running_balance_breaks(client: Any, database: str, *, cut: Cut | None = None) -> list[dict[str, Any]]:
    """Events whose balance is not the previous event's plus their amount, or whose
    sequence does not follow the previous one: a corrupted or a missing row."""
    rows = client.query(
        f"""
        SELECT account_id, sequence, previous_sequence, balance, previous_balance, amount
        FROM (
            SELECT account_id, sequence, balance, amount,
                   lagInFrame(sequence, 1, 0) OVER w AS previous_sequence,
                   lagInFrame(balance, 1, 0) OVER w AS previous_balance
            FROM {database}.account_events FINAL
            WHERE {cut_condition(cut)}
            WINDOW w AS (PARTITION BY account_id ORDER BY sequence ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
        )
        WHERE sequence != previous_sequence + 1 OR balance != previous_balance + amount
        ORDER BY account_id, sequence
        """
    ).result_rows
    return [
        {
            "account_id": account_id,
            "sequence": int(sequence),
            "previous_sequence": int(previous_sequence),
            "balance": int(balance_value),
            "expected_balance": int(previous_balance) + int(amount),
        }
        for account_id, sequence, previous_sequence, balance_value, previous_balance, amount in rows
    ]


def latest_table_mismatches(client: Any, database: str) -> list[dict[str, Any]]:
    """account_latest rows that differ from the event at the same sequence (the sink
    writes events first, so a live sink cannot make a false positive here)."""
    columns = SUMMARY_STATE
    rows = client.query(
        f"""
        SELECT latest.account_id, latest.sequence, event.sequence,
               {", ".join(f"latest.{column}, event.{column}" for column in columns)}
        FROM (SELECT * FROM {database}.account_latest FINAL) AS latest
        LEFT JOIN (SELECT * FROM {database}.account_events FINAL) AS event
            ON event.account_id = latest.account_id AND event.sequence = latest.sequence
        WHERE event.sequence != latest.sequence
           OR {" OR ".join(f"latest.{column} != event.{column}" for column in columns)}
        """,
        settings={"join_use_nulls": 0},
    ).result_rows
    return [{"account_id": row[0], "sequence": int(row[1])} for row in rows]


def event_count(client: Any, database: str) -> int:
    """Events the view holds, each (account, sequence) once."""
    return int(client.query(f"SELECT count() FROM {database}.account_events FINAL").result_rows[0][0])


def progress(client: Any, database: str) -> dict[int, int]:
    """events partition -> the next offset the view has not written."""
    rows = client.query(
        f"SELECT partition, max(next_offset) FROM {database}.sink_progress GROUP BY partition"
    ).result_rows
    return {int(partition): int(offset) for partition, offset in rows}
