"""`streamwallet submit`: one command of any type, produced to the commands topic, its
result awaited and printed.

    streamwallet submit Deposit --dedup-id d1 --account-id alice --amount 12.34 --currency USD
    streamwallet submit --body '{"type": "Deposit", "dedup_id": "d1", ...}'    (or --body - for stdin)

Every mutating command needs a dedup id of your choosing: sending the same command again
with the same dedup id (a retry after a timeout, say) is answered with the first result
and changes nothing. The command id is generated unless given.

Exit codes: 0 accepted, 1 rejected by the ledger (the code and message are printed),
2 nothing was sent: the input is not a command, breaks a rule the ledger checks without
its state (a negative amount, the same account twice: refused on sight, with the rule's
code, as the gateway does), or Kafka cannot be reached, 4 no result within --timeout-s
(the outcome is unknown: submit again with the same dedup id).
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
from typing import Any

from confluent_kafka import KafkaException

from codec import Codec
from foundation.settings import Settings
from gateway.client import LedgerClient
from gateway.translate import result_json
from ledger.events import CommandResult, ResultStatus
from ledger.money import format_amount
from streamwallet.command_input import InputError, command_from_body, currencies_of, operator_principal
from streamwallet.exit_codes import CommandError, ExitCode
from streamwallet.kafka_access import require_topics
from streamwallet.output import print_error, print_json, table

BODY_BYTES_MAX = 1024 * 1024  # a command's JSON on --body or stdin, at most


def read_body(text: str) -> Any:
    """--body's JSON; `-` reads it from stdin."""
    if text == "-":
        text = sys.stdin.read(BODY_BYTES_MAX + 1)
    if len(text) > BODY_BYTES_MAX:
        raise CommandError(f"the command's JSON is longer than {BODY_BYTES_MAX} characters")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise CommandError(f"the command is not valid JSON: {error}") from None


def submit_command(settings: Settings, body: Any, *, timeout_s: float, as_json: bool) -> int:
    codec = Codec()
    try:
        command = command_from_body(body, codec, principal=operator_principal(settings))
    except InputError as error:
        raise CommandError(f"not a command: {error} (nothing was sent)") from None
    topology = settings.topology()
    require_topics(settings, topology.commands, topology.results)
    client = LedgerClient(settings, codec=codec, pending_max=1)
    try:
        future = client.submit(command)
        client.flush(timeout_s)
        result = future.result(timeout_s)
    except KafkaException as error:
        raise CommandError(f"the command could not be produced: {error.args[0].str()}") from None
    except concurrent.futures.TimeoutError:
        print_error(
            f"no result for command {command.command_id} within {timeout_s:g}s: its outcome is unknown (it may "
            "still be applied). Submitting it again with the same dedup id is safe: it is applied at most once."
        )
        return ExitCode.TIMED_OUT
    finally:
        client.forget(command.command_id)
        client.close()
    currencies = currencies_of(command, body)
    if as_json:
        print_json(result_json(result, currencies))
    else:
        print(render_result(result, currencies))
    return ExitCode.OK if result.status is ResultStatus.ACCEPTED else ExitCode.NO


def render_result(result: CommandResult, currencies: dict[str, str]) -> str:
    lines = [f"{result.status.value}  {result.command_type}  command {result.command_id}  dedup {result.dedup_id}"]
    if result.code is not None:
        lines.append(f"  {result.code.value}: {result.message}")
    if result.replayed:
        lines.append(
            f"  a repeat: answered from the dedup memory with the result of command {result.original_command_id}"
        )
    if result.reference_id:
        lines.append(f"  reference {result.reference_id}")
    rows = []
    for position in result.positions:
        currency = currencies.get(position.account_id)

        def money(minor: int, currency: str | None = currency) -> str:
            return f"{minor} minor units" if currency is None else f"{format_amount(minor, currency)} {currency}"

        rows.append(
            [
                position.account_id,
                f"event {position.sequence}",
                f"balance {money(position.balance)}",
                f"available {money(position.available)}",
            ]
        )
    if rows:
        lines.append(table(rows))
    if result.queried is not None:
        lines.append("  the command asked about:")
        lines.extend("  " + line for line in render_result(result.queried, currencies).splitlines())
    return "\n".join(lines)
