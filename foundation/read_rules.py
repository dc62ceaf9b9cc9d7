"""Who may read what: the rules the gateway and the query service both apply, pure
decisions with no I/O (the gateway answers with its error body, the query service with
its own).

    read                                         who
    an account (balance, history, as-of,
      turnover, roll-up)                         OPERATOR, AUDITOR, ADMIN; OWNER of that account
    the listing of accounts                      OPERATOR, AUDITOR, ADMIN; OWNER: its own (owner=<its id>)
    totals, reconciliation, SQL, metrics         OPERATOR, AUDITOR
    rebuilding the views                         OPERATOR
"""

from __future__ import annotations

from ledger.principals import Principal, Role

OWNER, OPERATOR, ADMIN, AUDITOR = Role.OWNER, Role.OPERATOR, Role.ADMIN, Role.AUDITOR

EVERY_ACCOUNT_READERS = frozenset({OPERATOR, AUDITOR, ADMIN})  # read any account
ACCOUNT_READERS = EVERY_ACCOUNT_READERS | {OWNER}  # may read some account
TOTALS_READERS = frozenset({OPERATOR, AUDITOR})  # totals, reconciliation, SQL
REBUILDERS = frozenset({OPERATOR})
OPERATIONS_READERS = frozenset({OPERATOR, AUDITOR, ADMIN})  # metrics, the log level
OPERATIONS_WRITERS = frozenset({OPERATOR, ADMIN})  # changing the log level


class ReadRefusedError(Exception):
    """A read the principal may not make: the message says why, `allowed` who may."""

    def __init__(self, message: str, allowed: frozenset[Role]) -> None:
        super().__init__(message)
        self.message = message
        self.allowed = allowed


def holds_any(principal: Principal, roles: frozenset[Role]) -> bool:
    return not principal.roles.isdisjoint(roles)


def reads_every_account(principal: Principal) -> bool:
    return holds_any(principal, EVERY_ACCOUNT_READERS)


def may_read_account(principal: Principal, owner: str | None) -> bool:
    """An account whose owner is `owner` (None: not known to the view)."""
    if reads_every_account(principal):
        return True
    return principal.has(OWNER) and owner is not None and owner == principal.principal_id


def listing_owner(principal: Principal, owner: str | None) -> str | None:
    """The `owner` a listing asked with `owner` must be filtered by for this principal:
    `owner` itself for one that reads every account, the principal's own id for an OWNER
    (who lists only its own accounts). Raises ReadRefusedError when the listing is not allowed."""
    if reads_every_account(principal):
        return owner
    if principal.has(OWNER) and owner in (None, principal.principal_id):
        return principal.principal_id
    if principal.has(OWNER):
        raise ReadRefusedError("an owner lists only its own accounts (owner=<its principal id>)", EVERY_ACCOUNT_READERS)
    raise ReadRefusedError("listing accounts needs the role ADMIN, AUDITOR, OPERATOR or OWNER", ACCOUNT_READERS)
