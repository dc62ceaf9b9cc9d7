"""Who the tests' commands come from unless a test says otherwise: one principal with every
role, the owner of every account the tests open (the shard authorizes every command:
ledger/authorization.py; tests/unit/ledger/test_authorization.py tries everyone else)."""

from __future__ import annotations

from ledger.principals import Principal, Role

TESTER = Principal(principal_id="tester", roles=frozenset(Role))

# The columns of the authorization matrices (tests/integration/test_gateway_authorization.py,
# test_query_authorization.py): each role alone, and no role: column -> (subject, roles).
ROLE_COLUMNS: dict[str, tuple[str, frozenset[Role]]] = {
    "OWNER": ("alice", frozenset({Role.OWNER})),
    "OPERATOR": ("olga", frozenset({Role.OPERATOR})),
    "ADMIN": ("adam", frozenset({Role.ADMIN})),
    "AUDITOR": ("audrey", frozenset({Role.AUDITOR})),
    "none": ("nemo", frozenset()),
}
