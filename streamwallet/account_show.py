"""`streamwallet account show <id>`: an account as the query service's view holds it.

Balance, available, held, pending in and out, limits, status, parent and the newest
events come from the query service (`GET /accounts/{id}` and `/accounts/{id}/history`
at STREAMWALLET_QUERY_URL); `--min-seq N` waits until the view holds the account's event
N (the sequence a command's result returned), so what you just did is shown.

Open holds come from the command side: the events name a hold when it is placed, voided
or expires, but not when it is captured, so the view cannot list them; they are read
from the account's partition of the changelog topic (the shard's own table). That reads
the whole partition once; `--no-holds` skips it.

Amounts are shown in the account's currency, exactly (integer minor units underneath).
Exit codes: 0 shown, 1 no such account, 2 the query service or Kafka cannot be reached,
4 the view did not reach --min-seq in time.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
from typing import Any

from codec import Codec
from foundation.http import request_json
from foundation.offsets import last_stable_offsets
from foundation.settings import Settings
from ledger.accounts import Hold, HoldStatus
from ledger.state import Table
from sinks.reconcile import read_until
from streamwallet.exit_codes import CommandError, ExitCode
from streamwallet.kafka_access import require_topics
from streamwallet.output import amount_text, iso_time, limit_text, print_error, print_json, table, with_decimals
from topologies import partition_for

QUERY_TIMEOUT_S = 30.0
ACCOUNT_MONEY_FIELDS = ("balance", "available", "held", "pending_in", "pending_out", "lower_limit", "upper_limit")
EVENT_MONEY_FIELDS = ("amount", "held_change", "balance", "held", "available", "pending_in", "pending_out")
OPEN_HOLD_STATUSES = (HoldStatus.OPEN, HoldStatus.CAPTURING)


def show_account(settings: Settings, account_id: str, *, events: int, holds: bool, min_seq: int, as_json: bool) -> int:
    path = f"/accounts/{urllib.parse.quote(account_id, safe='')}"
    status, body = _get(settings, path, {"min_seq": min_seq} if min_seq > 0 else {})
    if status == 404:
        print_error(f"account {account_id} not found")
        return ExitCode.NO
    if status == 409:
        raise CommandError(str(body.get("message", body)), ExitCode.TIMED_OUT)
    if status != 200:
        raise CommandError(f"the query service answered {status}: {body}")
    account: dict[str, Any] = body["account"]
    history: list[dict[str, Any]] = []
    if events > 0:
        status, body = _get(settings, f"{path}/history", {"limit": events})
        if status != 200:
            raise CommandError(f"the query service answered {status} for the history: {body}")
        history = body["events"]
    open_holds = read_open_holds(settings, account_id) if holds else None
    if as_json:
        print_json(_as_json(account, history, open_holds))
    else:
        print(render(account, history, open_holds))
    return ExitCode.OK


def _get(settings: Settings, path: str, parameters: dict[str, int]) -> tuple[int, Any]:
    query = f"?{urllib.parse.urlencode(parameters)}" if parameters else ""
    url = f"{settings.query_url}{path}{query}"
    try:
        status, body = request_json("GET", url, timeout_s=QUERY_TIMEOUT_S + settings.read_wait_ms_max / 1000)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise CommandError(
            f"cannot reach the query service at {settings.query_url} ({reason}); is it running "
            "(streamwallet query) and is STREAMWALLET_QUERY_URL right?"
        ) from None
    return status, body if isinstance(body, dict) else {}


def read_open_holds(settings: Settings, account_id: str) -> list[Hold]:
    """The account's holds still open (or being captured), from its changelog partition."""
    changelog = settings.topology().changelog
    admin = require_topics(settings, changelog)
    partition = partition_for(account_id, changelog.partitions)
    prefix = f"{Table.HOLDS.value}{account_id}|".encode()  # ledger/state.py: "<account>|<hold id>"
    codec = Codec()
    found: dict[bytes, Hold] = {}

    def take(message: Any) -> None:
        key = message.key() or b""
        if not key.startswith(prefix):
            return
        value = message.value()
        if value is None:
            found.pop(key, None)
        else:
            found[key] = codec.decode(value, expected=(Hold,))

    read_until(settings, changelog.name, last_stable_offsets(admin, changelog.name, [partition]), take)
    return sorted(
        (hold for hold in found.values() if hold.status in OPEN_HOLD_STATUSES), key=lambda hold: hold.expires_at_ms
    )


def _as_json(account: dict[str, Any], history: list[dict[str, Any]], holds: list[Hold] | None) -> dict[str, Any]:
    currency = account["currency"]
    return {
        "account": with_decimals(account, currency, ACCOUNT_MONEY_FIELDS),
        "open_holds": None
        if holds is None
        else [
            with_decimals(
                {
                    "hold_id": hold.hold_id,
                    "amount": hold.amount,
                    "status": hold.status.value,
                    "expires_at_ms": hold.expires_at_ms,
                    "command_id": hold.command_id,
                },
                currency,
                ["amount"],
            )
            for hold in holds
        ],
        "events": [with_decimals(event, currency, EVENT_MONEY_FIELDS) for event in history],
    }


def render(account: dict[str, Any], history: list[dict[str, Any]], holds: list[Hold] | None) -> str:
    currency = account["currency"]

    def money(name: str) -> str:
        return amount_text(account[name], currency)

    lines = [
        f"account {account['account_id']}  {currency}  {account['status']}"
        + (f"  parent {account['parent_account_id']}" if account.get("parent_account_id") else ""),
        table(
            [
                ["balance", money("balance")],
                ["available", money("available")],
                ["held", money("held")],
                ["pending in", money("pending_in")],
                ["pending out", money("pending_out")],
                ["lower limit", limit_text(account["lower_limit"], currency)],
                ["upper limit", limit_text(account["upper_limit"], currency)],
            ]
        ),
        f"  as of its event {account['sequence']}, {account['updated_at']}",
    ]
    if holds is not None:
        lines.append(f"open holds: {len(holds)}" + (" (from the command side)" if holds else ""))
        rows = [
            [
                hold.hold_id,
                amount_text(hold.amount, currency),
                hold.status.value,
                f"expires {iso_time(hold.expires_at_ms)}",
            ]
            for hold in holds
        ]
        if rows:
            lines.append(table(rows))
    lines.append(f"recent events: {len(history)}" + (" (newest first)" if history else ""))
    if history:
        rows = [["seq", "kind", "amount", "balance", "held", "counterparty", "code", "at"]]
        rows += [
            [
                str(event["sequence"]),
                event["kind"],
                amount_text(event["amount"], currency, signed=True),
                amount_text(event["balance"], currency),
                amount_text(event["held"], currency),
                event.get("counterparty_account_id") or "",
                event.get("code") or "",
                event["occurred_at"],
            ]
            for event in history
        ]
        lines.append(table(rows))
    return "\n".join(lines)
