"""Who the tests' commands come from unless a test says otherwise: one principal with every
role, the owner of every account the tests open (the shard authorizes every command:
ledger/authorization.py; tests/unit/ledger/test_authorization.py tries everyone else)."""

from __future__ import annotations

from ledger.principals import Principal, Role

TESTER = Principal(principal_id="tester", roles=frozenset(Role))
