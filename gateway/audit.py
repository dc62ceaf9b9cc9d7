"""The gateway's part of the audit trail: each request it refuses with 401 or 403 is an
`AuditEvent` (ledger/audit.py) on the audit topic, produced outside any transaction.

What a refused request attempted: a command submit names its type and the account it is
for (`note_attempt`, before the principal's roles are checked); any other request is
named by its method and route. Values from the body are cut to the ledger's bounds: a
refused request's body was never validated.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aiohttp import web

from gateway.errors import ApiError, GatewayCode
from ledger.audit import AuditEvent, AuditOutcome, AuditSource
from ledger.limits import ACCOUNT_ID_LENGTH_MAX, COMMAND_ID_LENGTH_MAX, REFERENCE_ID_LENGTH_MAX
from ledger.principals import ANONYMOUS, Principal

# The body's field that names the account a command is for, in the order they are tried.
ROUTING_FIELDS = ("account_id", "from_account_id", "batch_id")
MESSAGE_LENGTH_MAX = 1024  # characters of the refusal's message kept on the trail
REFUSED_STATUSES = frozenset({401, 403})
ROUTING_KEY_LENGTH_MAX = max(ACCOUNT_ID_LENGTH_MAX, REFERENCE_ID_LENGTH_MAX)  # an account or a batch id


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    action: str
    account_id: str
    command_id: str


ATTEMPT_KEY: web.RequestKey[Attempt] = web.RequestKey("audit_attempt")


def note_attempt(request: web.Request, body: dict[str, Any], command_type: type) -> None:
    """What a submit attempts, for the trail if it is refused."""
    account_id = next((body[name] for name in ROUTING_FIELDS if isinstance(body.get(name), str)), "")
    command_id = body.get("command_id")
    request[ATTEMPT_KEY] = Attempt(
        action=command_type.__name__,
        account_id=account_id[:ROUTING_KEY_LENGTH_MAX],
        command_id=command_id[:COMMAND_ID_LENGTH_MAX] if isinstance(command_id, str) else "",
    )


def is_refusal(error: ApiError) -> bool:
    """A 401 or 403 the gateway decided (a shard's FORBIDDEN is on the trail already)."""
    return isinstance(error.code, GatewayCode) and error.status in REFUSED_STATUSES


def refusal(request: web.Request, error: ApiError, principal: Principal | None) -> AuditEvent:
    attempt = request.get(ATTEMPT_KEY)
    route = request.match_info.route.resource
    path = route.canonical if route is not None else request.rel_url.path[:MESSAGE_LENGTH_MAX]
    return AuditEvent(
        principal=principal or ANONYMOUS,
        action=attempt.action if attempt is not None else f"{request.method} {path}",
        account_id=attempt.account_id
        if attempt is not None
        else request.match_info.get("account_id", "")[:ROUTING_KEY_LENGTH_MAX],
        command_id=attempt.command_id if attempt is not None else "",
        outcome=AuditOutcome.DENIED,
        code=error.code.value,
        message=error.message[:MESSAGE_LENGTH_MAX],
        source=AuditSource.GATEWAY,
        occurred_at_ms=int(time.time() * 1000),
    )
