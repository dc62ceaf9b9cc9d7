"""What each role may ask of the gateway: pure decisions, no I/O, one table per kind of
request. The shard decides who may change which account (an owner moves money out of its
own accounts only); the gateway refuses at once what no role of the principal could ever
do, and decides reads itself with the rules the query service applies again
(foundation/read_rules.py).

    command type                                          roles that may send it
    OpenAccount, AssignOwner                              ADMIN
    UpdateLimits, LockAccount, UnlockAccount,
      CloseAccount, ReverseTransfer, Deposit,
      SetVelocityRules                                    OPERATOR
    Withdraw, Transfer, Batch, PlaceHold, CaptureHold,
      VoidHold                                            OWNER (the shard: of the account debited)
    QueryCommand                                          OPERATOR, AUDITOR

    read                                                  who
    /v1/accounts/{id}[/history|/as-of|/turnover|/rollup]  OPERATOR, AUDITOR, ADMIN; OWNER of that account
    /v1/totals                                            OPERATOR, AUDITOR
    /v1/accounts (the listing)                            OPERATOR, AUDITOR, ADMIN; OWNER: its own only
    GET /v1/commands/{id}                                 OPERATOR, AUDITOR; the principal that sent it
    /v1/status                                            any principal
"""

from __future__ import annotations

from typing import Any

from foundation import read_rules
from foundation.read_rules import (
    ACCOUNT_READERS,
    OPERATIONS_READERS,
    OPERATIONS_WRITERS,
    TOTALS_READERS,
    ReadRefusedError,
    may_read_account,
)
from gateway.errors import ApiError, GatewayCode
from ledger import commands
from ledger.authorization import RULES
from ledger.principals import Principal, Role

OWNER, OPERATOR, ADMIN, AUDITOR = Role.OWNER, Role.OPERATOR, Role.ADMIN, Role.AUDITOR

# The ledger's table (ledger/authorization.py), which the shard enforces: the gateway refuses at
# once what no role of the principal could send; which account is whose is the shard's call.
COMMAND_ROLES: dict[type[commands.Command], frozenset[Role]] = {cls: rule.roles for cls, rule in RULES.items()}
EVERY_OUTCOME_READERS = frozenset({OPERATOR, AUDITOR})  # the outcome of any command
OPERATIONS_PATHS = frozenset({"/metrics", "/admin/log-level"})


def forbidden(principal: Principal, message: str, allowed: frozenset[Role] | None = None) -> ApiError:
    details: dict[str, Any] = {"principal_id": principal.principal_id, "roles": sorted(principal.roles)}
    if allowed is not None:
        details["allowed_roles"] = sorted(allowed)
    return ApiError(GatewayCode.FORBIDDEN, message, details=details)


_holds_any = read_rules.holds_any
reads_every_account = read_rules.reads_every_account


def check_submit(principal: Principal, command_type: type[commands.Command]) -> None:
    allowed = COMMAND_ROLES[command_type]
    if not _holds_any(principal, allowed):
        raise forbidden(principal, f"{command_type.__name__} needs the role {' or '.join(sorted(allowed))}", allowed)


def check_account_read(principal: Principal) -> None:
    """Before anything is read: may this principal read some account at all?"""
    if not _holds_any(principal, ACCOUNT_READERS):
        raise forbidden(principal, "reading accounts needs a role", ACCOUNT_READERS)


def check_owner(principal: Principal, account_id: str, owner: str | None) -> None:
    if not may_read_account(principal, owner):
        raise forbidden(principal, f"account {account_id} is not one of this principal's accounts", ACCOUNT_READERS)


def listing_owner(principal: Principal, owner: str | None) -> str | None:
    """The owner a listing is filtered by: `owner` (or none) for the roles that read every
    account; an OWNER's own id for an owner, who lists only its own accounts (403 for another's)."""
    try:
        return read_rules.listing_owner(principal, owner)
    except ReadRefusedError as error:
        raise forbidden(principal, error.message, error.allowed) from None


def check_totals_read(principal: Principal) -> None:
    if not _holds_any(principal, TOTALS_READERS):
        raise forbidden(principal, "totals need the role AUDITOR or OPERATOR", TOTALS_READERS)


def reads_every_outcome(principal: Principal) -> bool:
    return _holds_any(principal, EVERY_OUTCOME_READERS)


def may_read_outcome(principal: Principal, sender: str | None) -> bool:
    """The outcome of a command sent by `sender` (None: not known)."""
    return reads_every_outcome(principal) or (sender is not None and sender == principal.principal_id)


def check_outcome(principal: Principal, command_id: str, sender: str | None) -> None:
    if not may_read_outcome(principal, sender):
        raise forbidden(
            principal,
            f"command {command_id} was not sent by this principal (or is not known to have been)",
            EVERY_OUTCOME_READERS,
        )


def check_operations(principal: Principal, *, change: bool) -> None:
    """The gateway's operational endpoints: reading metrics or the log level needs a role
    that runs or audits the ledger; changing the level, one that runs it."""
    allowed = OPERATIONS_WRITERS if change else OPERATIONS_READERS
    if not _holds_any(principal, allowed):
        raise forbidden(principal, "the gateway's operations endpoints need an operator's or auditor's role", allowed)
