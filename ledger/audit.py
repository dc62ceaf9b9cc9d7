"""The audit trail: who tried what, and whether they were let.

An `AuditEvent` records one authorization decision worth keeping apart from the account
events: every privileged command (one only OPERATOR or ADMIN may send,
`ledger.authorization.is_privileged`), allowed or denied, and every denied command
(FORBIDDEN), whoever sent it. The shard emits them in its outcome, timed by the
partition's clock, so a replay of the same inputs emits the same events; the gateway
adds one for each request it refuses with 401 or 403 before any shard sees it.
`outcome` says whether the principal was allowed to send the command, not whether the
command then succeeded (its result says that).
"""

from __future__ import annotations

import dataclasses
import enum

from ledger.principals import Principal


class AuditOutcome(enum.StrEnum):
    ALLOWED = "ALLOWED"
    DENIED = "DENIED"


class AuditSource(enum.StrEnum):
    SHARD = "SHARD"  # decided by the shard that owns the account
    GATEWAY = "GATEWAY"  # refused by the HTTP gateway (401, 403) before reaching Kafka


@dataclasses.dataclass(slots=True, kw_only=True)
class AuditEvent:
    principal: Principal  # who acted (anonymous: a request without a valid credential)
    action: str  # the command's type (OpenAccount, ...), or the gateway's route ("POST /v1/...")
    account_id: str  # the command's routing key; "" when unknown
    command_id: str  # "" when the request never became a command
    outcome: AuditOutcome
    code: str  # why it was denied: an ErrorCode (FORBIDDEN) or the gateway's error code; "" when allowed
    message: str  # a readable reason for a denial; "" when allowed
    source: AuditSource
    occurred_at_ms: int  # the deciding partition's clock, or the gateway's clock
