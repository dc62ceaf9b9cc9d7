"""POST /v1/commands and GET /v1/commands/{command_id}: HTTP <-> the ledger client.

A submit waits for the command's result, at most `gateway_result_timeout_ms` (then 202
with the status URL); with `?wait=false` or `Prefer: respond-async` it answers 202 as soon
as Kafka has the command. The pending slot a waiting submit takes is released on every
path: result, timeout, failed delivery, a command the codec refuses, a cancelled request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import TypeVar

from aiohttp import web

from codec import EncodeError
from gateway import audit, authorization
from gateway.client import CommandIdPendingError, DeliveryError, LedgerClient, PendingLimitError
from gateway.errors import ApiError, GatewayCode
from gateway.limits import BODY_BYTES_MAX
from gateway.principals import RecentSenders, build, carries_principal, sender_of
from gateway.reads import AUTHORIZATION, Reader, path_segment
from gateway.translate import checked_currencies, command_type, parse_json, result_json, to_command
from ledger import commands
from ledger.errors import ErrorCode
from ledger.events import CommandResult, ResultStatus
from ledger.principals import Principal

JSON_MEDIA_TYPE = "application/json"
RESPOND_ASYNC = "respond-async"
REPLAYED_HEADER = "Idempotent-Replayed"
T = TypeVar("T")


def status_url(command_id: str, routing_key: str) -> str:
    """Where the outcome of a command can be asked for (GET /v1/commands/{id})."""
    return f"/v1/commands/{path_segment(command_id)}?account_id={urllib.parse.quote(routing_key, safe='')}"


def pending_response(command: commands.Command) -> web.Response:
    url = status_url(command.command_id, command.routing_key)
    return web.json_response(
        {"status": "PENDING", "command_id": command.command_id, "status_url": url},
        status=202,
        headers={"Location": url},
    )


def result_response(result: CommandResult, currencies: dict[str, str]) -> web.Response:
    """An accepted command: 200 and its result; a refused one: the error body with the
    ledger's code and the result in `details`."""
    body = result_json(result, currencies)
    headers = {REPLAYED_HEADER: "true"} if result.replayed else {}
    if result.status is ResultStatus.ACCEPTED:
        return web.json_response(body, headers=headers)
    code = result.code or ErrorCode.MALFORMED
    error = ApiError(code, result.message, details={"result": body})
    return web.json_response(error.body(), status=error.status, headers={**headers, **error.headers()})


# -- the request ---------------------------------------------------------------------------------


def check_media_type(request: web.Request) -> None:
    if "Content-Type" in request.headers and request.content_type != JSON_MEDIA_TYPE:
        raise ApiError(
            GatewayCode.UNSUPPORTED_MEDIA_TYPE,
            f"send the command as {JSON_MEDIA_TYPE}",
            details={"content_type": request.content_type},
        )


def wants_async(request: web.Request) -> bool:
    """?wait=false, or the Prefer header asking for respond-async."""
    for name in request.query:
        if name != "wait":
            raise ApiError(
                GatewayCode.UNKNOWN_PARAMETER,
                f"unknown query parameter {name!r}",
                details={"parameter": name, "allowed": ["wait"]},
            )
    wait = request.query.getall("wait", [])
    if len(wait) > 1 or (wait and wait[0] not in ("true", "false")):
        raise ApiError(GatewayCode.BAD_PARAMETER, "wait is true or false", details={"parameter": "wait"})
    preferences = {part.strip().lower() for part in request.headers.get("Prefer", "").split(",")}
    return (wait == ["false"]) or RESPOND_ASYNC in preferences


async def read_command(request: web.Request, principal: Principal) -> commands.Command:
    """The command of a request's body, once its type is one the principal may send."""
    check_media_type(request)
    if request.content_length is not None and request.content_length > BODY_BYTES_MAX:
        raise ApiError(GatewayCode.BODY_TOO_LARGE, f"the body exceeds {BODY_BYTES_MAX} bytes")
    body = parse_json(await request.read())
    kind = command_type(body)
    audit.note_attempt(request, body, kind)
    authorization.check_submit(principal, kind)
    return to_command(body, principal=principal, idempotency_key=request.headers.get("Idempotency-Key"))


# -- waiting on the client -----------------------------------------------------------------------


async def _within(future: concurrent.futures.Future[T], timeout_s: float) -> T | None:
    """The future's value, or None if it has none within the timeout. Never cancels it
    (the client's reader may be resolving it at that moment)."""
    wrapped = asyncio.wrap_future(future)
    done, _ = await asyncio.wait({wrapped}, timeout=timeout_s)
    if not done:
        return None
    return wrapped.result()


@contextlib.contextmanager
def kafka_errors() -> Iterator[None]:
    """A command the codec refuses (the last line: translate.py refuses what it cannot carry)
    or Kafka does not take, as the error body."""
    try:
        yield
    except EncodeError as error:
        raise ApiError(GatewayCode.BAD_REQUEST, f"the command cannot be encoded: {error}") from None
    except DeliveryError as error:
        raise ApiError(GatewayCode.KAFKA_UNAVAILABLE, f"Kafka did not take the command: {error}") from None


def _submit(client: LedgerClient, command: commands.Command) -> concurrent.futures.Future[CommandResult]:
    try:
        with kafka_errors():
            return client.submit(command)
    except PendingLimitError as error:
        raise ApiError(GatewayCode.PENDING_LIMIT, str(error), details={"pending_max": client.pending_max}) from None
    except CommandIdPendingError as error:
        raise ApiError(GatewayCode.COMMAND_ID_PENDING, str(error)) from None


async def request_result(client: LedgerClient, command: commands.Command, timeout_s: float) -> CommandResult | None:
    """Submit and wait for the result, at most timeout_s (None then); the slot is free afterwards."""
    future = _submit(client, command)
    try:
        with kafka_errors():
            return await _within(future, timeout_s)
    finally:
        client.forget(command.command_id)


async def send(client: LedgerClient, command: commands.Command, timeout_s: float) -> None:
    with kafka_errors():
        delivered = await _within(client.send(command), timeout_s)
    if delivered is None:
        raise ApiError(
            GatewayCode.KAFKA_UNAVAILABLE,
            "Kafka did not confirm the command in time; it may still arrive: send it again with the same "
            "Idempotency-Key (a repeat is answered, never applied twice)",
        )


# -- handlers ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Submitting:
    """What a submit or a lookup needs besides the request: who asks, the ledger's client,
    how long to wait, and the record of who sent what."""

    principal: Principal
    client: LedgerClient
    timeout_s: float
    senders: RecentSenders


async def submit(request: web.Request, context: Submitting) -> web.Response:
    asynchronous = wants_async(request)
    command = await read_command(request, context.principal)
    if asynchronous:
        await send(context.client, command, context.timeout_s)
        context.senders.record(command, context.principal)
        return pending_response(command)
    result = await request_result(context.client, command, context.timeout_s)
    context.senders.record(command, context.principal)
    if result is None:
        return pending_response(command)
    if result.code is ErrorCode.ID_IN_USE:  # the id is an earlier command's, not this principal's
        context.senders.forget(command, context.principal)
    return result_response(result, checked_currencies(command))


async def outcome(request: web.Request, context: Submitting, *, reader: Reader) -> web.Response:
    """The outcome of an earlier command, asked of the shard that decided it (QueryCommand),
    for OPERATOR and AUDITOR, or the principal that sent it."""
    principal = context.principal
    target = request.match_info["command_id"]
    routing_key = _routing_key(request)
    sender = context.senders.sender(routing_key, target)
    known_sender = authorization.may_read_outcome(principal, sender)
    if not known_sender and not carries_principal(CommandResult):  # nobody can say who sent it
        authorization.check_outcome(principal, target, sender)
    query = build(
        commands.QueryCommand,
        principal=principal,
        command_id=str(uuid.uuid4()),
        account_id=routing_key,
        target_command_id=target,
    )
    if commands.validate(query) is not None:  # ids no command can have
        raise _command_not_found(target, routing_key)
    result = await request_result(context.client, query, context.timeout_s)
    if result is None:
        raise ApiError(GatewayCode.RESULT_TIMEOUT, "the ledger did not answer in time; ask again")
    if not known_sender:  # the ledger's result says who sent it
        authorization.check_outcome(principal, target, None if result.queried is None else sender_of(result.queried))
    if result.code is ErrorCode.COMMAND_NOT_FOUND:
        raise _command_not_found(target, routing_key, result.message)
    if result.status is ResultStatus.REJECTED:
        return result_response(result, {})
    if result.queried is None:  # a flow across partitions still under way
        return web.json_response(
            {"status": "PENDING", "command_id": target, "status_url": status_url(target, routing_key)}
        )
    accounts = sorted({position.account_id for position in result.queried.positions})
    currencies = await reader.currencies(accounts, request.headers.getall(AUTHORIZATION, []))
    return web.json_response(result_json(result.queried, currencies))


def _routing_key(request: web.Request) -> str:
    names = set(request.query)
    if names - {"account_id"}:
        unknown = sorted(names - {"account_id"})[0]
        raise ApiError(
            GatewayCode.UNKNOWN_PARAMETER,
            f"unknown query parameter {unknown!r}",
            details={"parameter": unknown, "allowed": ["account_id"]},
        )
    given = request.query.getall("account_id", [])
    if len(given) != 1 or not given[0]:
        raise ApiError(
            GatewayCode.BAD_PARAMETER,
            "account_id (once) is required: the account the command was sent to (a transfer's from_account_id, "
            "a batch's batch_id)",
            details={"parameter": "account_id"},
        )
    routing_key: str = given[0]
    return routing_key


def _command_not_found(command_id: str, routing_key: str, message: str | None = None) -> ApiError:
    return ApiError(
        ErrorCode.COMMAND_NOT_FOUND,
        message or f"no command {command_id} for {routing_key}",
        details={"command_id": command_id, "account_id": routing_key},
    )
