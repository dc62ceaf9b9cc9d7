"""POST /v1/commands/bulk: many independent commands in one request (bulk submit).

The body is `{"commands": [command, ...]}`, 1..BULK_COMMANDS_MAX commands, each exactly
what POST /v1/commands takes, each with its own `dedup_id` (no Idempotency-Key header:
a bulk request has no single key). The request is checked whole before anything is sent:
one malformed or forbidden command refuses the request with that command's code and its
`details.index`, and nothing is submitted. Then the commands go to Kafka in CommandBundles,
one per partition they route to (codec/bundling.py), and the answer lists one entry per
command, in order: its result (accepted or rejected, with the ledger's code), or PENDING
with its status URL if it had none within the gateway's result timeout. Each command is
decided on its own, exactly once; sending the same request again answers each command's
original result (replayed) and changes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway import authorization
from gateway.client import CommandIdPendingError, PendingLimitError
from gateway.command_handlers import Submitting, check_media_type, kafka_errors, status_url
from gateway.errors import ApiError, GatewayCode
from gateway.limits import BULK_COMMANDS_MAX
from gateway.translate import checked_currencies, command_type, parse_json, result_json, to_command
from ledger import commands
from ledger.errors import ErrorCode
from ledger.events import CommandResult

BULK_FIELD = "commands"


async def submit_bulk(request: web.Request, context: Submitting) -> web.Response:
    for name in request.query:
        raise ApiError(
            GatewayCode.UNKNOWN_PARAMETER,
            f"unknown query parameter {name!r}",
            details={"parameter": name, "allowed": []},
        )
    if "Idempotency-Key" in request.headers:
        raise ApiError(
            GatewayCode.IDEMPOTENCY_KEY_CONFLICT,
            "a bulk request takes no Idempotency-Key: each command carries its own dedup_id",
        )
    check_media_type(request)
    submitted = _commands(parse_json(await request.read()), context)
    futures = _submit(context, submitted)
    try:
        with kafka_errors():
            await asyncio.wait([asyncio.wrap_future(future) for future in futures], timeout=context.timeout_s)
            results = [future.result() if future.done() else None for future in futures]
    finally:
        for command in submitted:
            context.client.forget(command.command_id)
    answers = [_answer(command, result, context) for command, result in zip(submitted, results, strict=True)]
    return web.json_response({"results": answers})


def _commands(body: Any, context: Submitting) -> list[commands.Command]:
    if not isinstance(body, dict) or set(body) != {BULK_FIELD} or not isinstance(body[BULK_FIELD], list):
        raise ApiError(
            GatewayCode.BAD_REQUEST,
            f'the body must be {{"{BULK_FIELD}": [command, ...]}}',
            details={"field": BULK_FIELD},
        )
    items: list[Any] = body[BULK_FIELD]
    if not 0 < len(items) <= BULK_COMMANDS_MAX:
        raise ApiError(
            GatewayCode.TOO_MANY_COMMANDS,
            f"a bulk request carries 1..{BULK_COMMANDS_MAX} commands, this one {len(items)}",
            details={"commands_max": BULK_COMMANDS_MAX, "commands": len(items)},
        )
    submitted: list[commands.Command] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        try:
            authorization.check_submit(context.principal, command_type(item))
            command = to_command(item, principal=context.principal)
        except ApiError as error:
            raise ApiError(
                error.code,
                f"commands[{index}]: {error.message}",
                details={**error.details, "index": index},
                headers=error.extra_headers,
            ) from None
        if command.command_id in seen:
            raise ApiError(
                GatewayCode.BAD_REQUEST,
                f"commands[{index}]: command id {command.command_id!r} appears twice in the request",
                details={"index": index, "field": "command_id"},
            )
        seen.add(command.command_id)
        submitted.append(command)
    return submitted


def _submit(context: Submitting, submitted: list[commands.Command]) -> list[Any]:
    try:
        with kafka_errors():
            return context.client.submit_bundle(submitted)
    except PendingLimitError as error:
        raise ApiError(
            GatewayCode.PENDING_LIMIT, str(error), details={"pending_max": context.client.pending_max}
        ) from None
    except CommandIdPendingError as error:
        raise ApiError(GatewayCode.COMMAND_ID_PENDING, str(error)) from None


def _answer(command: commands.Command, result: CommandResult | None, context: Submitting) -> dict[str, Any]:
    context.senders.record(command, context.principal)
    if result is None:
        url = status_url(command.command_id, command.routing_key)
        return {"status": "PENDING", "command_id": command.command_id, "status_url": url}
    if result.code is ErrorCode.ID_IN_USE:  # the id is an earlier command's, not this principal's
        context.senders.forget(command, context.principal)
    return result_json(result, checked_currencies(command))
