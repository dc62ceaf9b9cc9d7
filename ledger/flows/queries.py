"""QueryCommand: the result of an earlier command, looked up by its command id.

Only through the routing key the command was sent with, and only while the command
is remembered (the retention window); a command still in flight is found with no
result yet ("in flight"). A duplicate's own id is found too (while its original is
remembered): the answer says whose duplicate it is, and its result is the one the
duplicate got (the original's, `replayed`).
"""

from __future__ import annotations

import dataclasses

from ledger.commands import QueryCommand, validate_body
from ledger.decision import Decision
from ledger.errors import ErrorCode, Rejection
from ledger.flows.intake import check_authorized, check_routing
from ledger.state import CommandIndexEntry, DedupEntry, Table


def query(decision: Decision, command: QueryCommand) -> None:
    rejection = check_routing(decision, command) or check_authorized(decision, command) or validate_body(command)
    if rejection is not None:
        decision.outcome.results.append(decision.result(command, rejection=rejection))
        return
    index: CommandIndexEntry | None = decision.store.get(Table.COMMANDS, command.target_command_id)
    # Only through the routing key the command was sent with: another account of this
    # shard must neither see it nor get another answer than another partitioning gives.
    if index is not None and not index.dedup_key.startswith(f"{command.account_id}|"):
        index = None
    entry: DedupEntry | None = None if index is None else decision.store.get(Table.DEDUP, index.dedup_key)
    target = command.target_command_id
    if entry is None or (entry.command_id != target and target not in entry.duplicates):
        decision.outcome.results.append(
            decision.result(
                command,
                rejection=Rejection(
                    ErrorCode.COMMAND_NOT_FOUND,
                    f"no command {command.target_command_id} for {command.account_id} within the retention window",
                ),
            )
        )
        return
    found = "found" if entry.result is not None else "in flight"
    queried = entry.result
    if entry.command_id != target:
        found = f"{found}: a duplicate of command {entry.command_id}"
        queried = None if queried is None else dataclasses.replace(queried, command_id=target, replayed=True)
    decision.outcome.results.append(decision.result(command, reference_id=target, message=found, queried=queried))
