"""Who may do what at the gateway (gateway/authorization.py), as a full matrix: every
role alone, no role, and some combinations, by every endpoint, by the account (or command)
the principal's own, another's, or one whose owner is not known. The expected grid is
written out by hand here, not derived from the code's tables.

    y    allowed
    -    refused (403)
    own  allowed for its own account (or the command it sent) only
"""

from __future__ import annotations

import pytest

from gateway import authorization
from gateway.errors import ApiError, GatewayCode
from ledger.commands import COMMAND_TYPES
from ledger.principals import Principal, Role

ROLE_COLUMNS: tuple[frozenset[Role], ...] = (
    frozenset({Role.OWNER}),
    frozenset({Role.OPERATOR}),
    frozenset({Role.ADMIN}),
    frozenset({Role.AUDITOR}),
    frozenset(),
)
#                   OWNER  OPERATOR ADMIN  AUDITOR  none
GRID: dict[str, tuple[str, str, str, str, str]] = {
    "OpenAccount": ("-", "-", "y", "-", "-"),
    "UpdateLimits": ("-", "y", "-", "-", "-"),
    "LockAccount": ("-", "y", "-", "-", "-"),
    "UnlockAccount": ("-", "y", "-", "-", "-"),
    "CloseAccount": ("-", "y", "-", "-", "-"),
    "Deposit": ("-", "y", "-", "-", "-"),
    "Withdraw": ("y", "-", "-", "-", "-"),
    "Transfer": ("y", "-", "-", "-", "-"),
    "Batch": ("y", "-", "-", "-", "-"),
    "PlaceHold": ("y", "-", "-", "-", "-"),
    "CaptureHold": ("y", "-", "-", "-", "-"),
    "VoidHold": ("y", "-", "-", "-", "-"),
    "ReverseTransfer": ("-", "y", "-", "-", "-"),
    "SetVelocityRules": ("-", "y", "-", "-", "-"),
    "QueryCommand": ("-", "y", "-", "y", "-"),
    "AssignOwner": ("-", "-", "y", "-", "-"),
    "GET /v1/accounts/{id}": ("own", "y", "y", "y", "-"),
    "GET /v1/accounts/{id}/history": ("own", "y", "y", "y", "-"),
    "GET /v1/accounts/{id}/as-of": ("own", "y", "y", "y", "-"),
    "GET /v1/accounts/{id}/turnover": ("own", "y", "y", "y", "-"),
    "GET /v1/accounts/{id}/rollup": ("own", "y", "y", "y", "-"),
    "GET /v1/totals": ("-", "y", "-", "y", "-"),
    "GET /v1/commands/{id}": ("own", "y", "own", "y", "own"),  # own: sent by this principal
}
OWNERSHIPS = ("own", "foreign", "unknown")
ME = "alice"


def owner_for(ownership: str) -> str | None:
    return {"own": ME, "foreign": "bob", "unknown": None}[ownership]


def allowed(endpoint: str, principal: Principal, ownership: str) -> bool:
    """What the gateway decides, asked the way its handlers ask."""
    try:
        if endpoint in {cls.__name__ for cls in COMMAND_TYPES}:
            authorization.check_submit(principal, next(cls for cls in COMMAND_TYPES if cls.__name__ == endpoint))
        elif endpoint == "GET /v1/totals":
            authorization.check_totals_read(principal)
        elif endpoint == "GET /v1/commands/{id}":
            authorization.check_outcome(principal, "c-1", owner_for(ownership))
        else:
            authorization.check_account_read(principal)
            authorization.check_owner(principal, "a-1", owner_for(ownership))
    except ApiError as error:
        assert error.status == 403 and error.code is GatewayCode.FORBIDDEN
        assert error.details["principal_id"] == ME
        return False
    return True


def expected(cell: str, ownership: str) -> bool:
    return cell == "y" or (cell == "own" and ownership == "own")


CELLS = [
    (endpoint, column, ownership)
    for endpoint in GRID
    for column in range(len(ROLE_COLUMNS))
    for ownership in OWNERSHIPS
]


def test_the_grid_covers_every_command_type() -> None:
    assert {cls.__name__ for cls in COMMAND_TYPES} <= set(GRID)
    assert len(CELLS) == 23 * 5 * 3


@pytest.mark.parametrize(("endpoint", "column", "ownership"), CELLS)
def test_each_role_alone(endpoint: str, column: int, ownership: str) -> None:
    principal = Principal(principal_id=ME, roles=ROLE_COLUMNS[column])
    assert allowed(endpoint, principal, ownership) is expected(GRID[endpoint][column], ownership)


@pytest.mark.parametrize("endpoint", list(GRID))
@pytest.mark.parametrize("ownership", OWNERSHIPS)
def test_roles_add_up(endpoint: str, ownership: str) -> None:
    """A principal with several roles may do what any one of them may."""
    for roles in (
        frozenset({Role.OWNER, Role.AUDITOR}),
        frozenset({Role.ADMIN, Role.OPERATOR}),
        frozenset(Role),
    ):
        principal = Principal(principal_id=ME, roles=roles)
        alone = [expected(GRID[endpoint][ROLE_COLUMNS.index(frozenset({role}))], ownership) for role in roles]
        assert allowed(endpoint, principal, ownership) is any(alone), (endpoint, sorted(roles), ownership)


@pytest.mark.parametrize("role", list(Role))
def test_the_operations_endpoints_need_an_operator_or_auditor_and_changing_the_level_an_operator(role: Role) -> None:
    principal = Principal(principal_id="p", roles=frozenset({role}))
    for change, allowed in ((False, {Role.OPERATOR, Role.AUDITOR, Role.ADMIN}), (True, {Role.OPERATOR, Role.ADMIN})):
        if role in allowed:
            authorization.check_operations(principal, change=change)
        else:
            with pytest.raises(ApiError) as refused:
                authorization.check_operations(principal, change=change)
            assert refused.value.code is GatewayCode.FORBIDDEN
