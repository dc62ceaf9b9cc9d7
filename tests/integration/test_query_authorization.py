"""Reads through the query service obey the gateway's rules (sinks/access.py), on real parts:
a worker, the query service and the gateway as separate processes against a real broker,
the query service and the worker's web port bound to every interface (exposed: a credential
is required).

The matrix, each cell an HTTP request straight to the query service with its status asserted:
  * every account read x every role alone and no role x alice's own account, bob's account
    and one that does not exist: OPERATOR, AUDITOR and ADMIN read any (404 for the missing
    one); an OWNER reads its own only, and gets 403 for bob's and for the missing one alike
    (it learns nothing of which accounts exist); no role: 403;
  * the listing x every role: an OWNER's is its own accounts only (owner=bob: 403);
  * totals, reconcile, the rebuild's progress, SQL with a bearer, metrics x every role;
    starting a rebuild x every role (OPERATOR only, asked last);
and without a credential: 401 with WWW-Authenticate on every route but /health and /ready;
and the worker's web port: 401 without a credential, 403 for an owner, 200 for an operator.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.credentials import bearer
from tests.gateway_api import Api, gateway_stack, open_with_balance, quoted
from tests.principals import ROLE_COLUMNS

pytestmark = pytest.mark.kafka

ROLES = ROLE_COLUMNS
EVERY_ACCOUNT_READERS = {"OPERATOR", "ADMIN", "AUDITOR"}
ACCOUNT_READS = ["", "/history", "/as-of?sequence=1", "/turnover", "/rollup"]
WHOSE = ["own", "foreign", "missing"]
# Routes that are not an account's: (method, path, the roles that may) -- sinks/access.py's table.
OPERATIONS: list[tuple[str, str, set[str]]] = [
    ("GET", "/totals", {"OPERATOR", "AUDITOR"}),
    ("GET", "/reconcile", {"OPERATOR", "AUDITOR"}),
    ("GET", "/admin/rebuild", {"OPERATOR", "AUDITOR"}),
    ("GET", "/?query=SELECT%201", {"OPERATOR", "AUDITOR"}),
    ("GET", "/metrics.json", {"OPERATOR", "AUDITOR", "ADMIN"}),
    ("GET", "/metrics", {"OPERATOR", "AUDITOR", "ADMIN"}),
]


@dataclasses.dataclass
class World:
    api: Api
    accounts: dict[str, str]  # whose -> account id

    def query(
        self, method: str, path: str, headers: dict[str, str], *, base_url: str | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body or the raw text, headers) of a request straight to the query service
        (or to `base_url`)."""
        request = urllib.request.Request(
            (base_url or self.api.settings.query_url) + path,
            data=b"" if method == "POST" else None,
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                raw, status, answer_headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, answer_headers = error.read(), error.code, dict(error.headers)
        try:
            return status, json.loads(raw), answer_headers
        except ValueError:
            return status, raw.decode(errors="replace"), answer_headers

    def as_role(self, column: str) -> dict[str, str]:
        subject, roles = ROLES[column]
        return self.api.credentials.headers(subject, roles)


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("query-authorization")
    exposed = {"query_host": "0.0.0.0", "worker_web_host": "0.0.0.0"}
    with gateway_stack(kafka_bootstrap, folder, **exposed) as api:  # exposed on purpose
        run = uuid.uuid4().hex[:8]
        accounts = {"own": f"alices-{run}", "foreign": f"bobs-{run}", "missing": f"nobody-{run}"}
        for whose, owner in (("own", "alice"), ("foreign", "bob")):
            sequence = open_with_balance(api, accounts[whose], 1000, owner=owner)
            assert api.read(f"/v1/accounts/{accounts[whose]}?min_seq={sequence}")[0] == 200
        yield World(api=api, accounts=accounts)


@pytest.mark.parametrize("whose", WHOSE)
@pytest.mark.parametrize("column", list(ROLES))
@pytest.mark.parametrize("suffix", ACCOUNT_READS)
def test_an_owner_reads_only_its_own_accounts_and_learns_nothing_of_others(
    world: World, suffix: str, column: str, whose: str
) -> None:
    status, answer, _ = world.query("GET", f"/accounts/{quoted(world.accounts[whose])}{suffix}", world.as_role(column))
    if column in EVERY_ACCOUNT_READERS:
        assert status == (404 if whose == "missing" else 200), answer
    elif column == "OWNER" and whose == "own":
        assert status == 200 and answer["status"] == "ok", answer
    else:  # another's account and a missing one answer alike
        assert (status, answer["code"]) == (403, "FORBIDDEN"), answer
        assert "account" not in answer and "balance" not in json.dumps(answer), answer


@pytest.mark.parametrize("column", list(ROLES))
def test_an_owners_listing_holds_its_own_accounts_only(world: World, column: str) -> None:
    status, answer, _ = world.query("GET", "/accounts", world.as_role(column))
    if column == "none":
        assert (status, answer["code"]) == (403, "FORBIDDEN"), answer
        return
    assert status == 200, answer
    listed = {account["account_id"] for account in answer["accounts"]}
    if column == "OWNER":
        assert listed == {world.accounts["own"]}, answer
        status, answer, _ = world.query("GET", "/accounts?owner=bob", world.as_role(column))
        assert (status, answer["code"]) == (403, "FORBIDDEN"), answer
    else:
        assert {world.accounts["own"], world.accounts["foreign"]} <= listed, answer


@pytest.mark.parametrize("column", list(ROLES))
@pytest.mark.parametrize(("method", "path", "allowed"), OPERATIONS)
def test_totals_reconcile_sql_and_metrics_need_their_roles(
    world: World, method: str, path: str, allowed: set[str], column: str
) -> None:
    status, answer, _ = world.query(method, path, world.as_role(column))
    if column in allowed:
        assert status == 200, answer
    else:
        assert (status, answer["code"]) == (403, "FORBIDDEN"), answer
        assert answer["allowed_roles"] == sorted(allowed), answer


def test_an_exposed_query_service_answers_401_without_a_credential(world: World) -> None:
    for method, path in [
        *[("GET", f"/accounts/{quoted(world.accounts['own'])}{suffix}") for suffix in ACCOUNT_READS],
        ("GET", "/accounts"),
        *[(method, path) for method, path, _ in OPERATIONS if not path.startswith("/?")],
        ("POST", "/admin/rebuild"),
    ]:
        for headers, code in (({}, "UNAUTHENTICATED"), (bearer("not-a-token"), "INVALID_CREDENTIAL")):
            status, answer, answer_headers = world.query(method, path, headers)
            assert (status, answer["code"]) == (401, code), (method, path, answer)
            assert answer_headers["WWW-Authenticate"].startswith('Bearer realm="streamwallet"'), answer_headers
    for path in ("/health", "/ready"):
        assert world.query("GET", path, {})[0] == 200


def test_an_exposed_workers_web_port_needs_an_operators_auditors_or_admins_credential(world: World) -> None:
    worker = f"http://127.0.0.1:{world.api.settings.worker_web_port + 1}"  # worker 1 (streamwallet/stack.py)
    for path in ("/metrics.json", "/metrics", "/admin/log-level", f"/accounts/{quoted(world.accounts['own'])}"):
        status, answer, headers = world.query("GET", path, {}, base_url=worker)
        assert (status, answer["code"]) == (401, "UNAUTHENTICATED"), (path, answer)
        assert headers["WWW-Authenticate"].startswith('Bearer realm="streamwallet"'), headers
        status, answer, _ = world.query("GET", path, world.as_role("OWNER"), base_url=worker)
        assert (status, answer["code"]) == (403, "FORBIDDEN"), (path, answer)
        status, answer, _ = world.query("GET", path, world.as_role("AUDITOR"), base_url=worker)
        assert status in (200, 421), (path, answer)  # 421: the account is on another worker's partition
    status, answer, _ = world.query("POST", "/admin/log-level", world.as_role("AUDITOR"), base_url=worker)
    assert (status, answer["code"]) == (403, "FORBIDDEN"), answer
    for path in ("/health", "/ready"):
        assert world.query("GET", path, {}, base_url=worker)[0] == 200


def test_the_gateway_forwards_its_callers_credential_and_scopes_an_owners_listing(world: World) -> None:
    alice = world.api.as_principal(*ROLES["OWNER"])
    status, answer, _ = alice.call("GET", f"/v1/accounts/{quoted(world.accounts['own'])}")
    assert status == 200 and answer["account"]["owner"] == "alice", answer
    status, answer, _ = alice.call("GET", f"/v1/accounts/{quoted(world.accounts['foreign'])}/history")
    assert (status, answer["code"]) == (403, "FORBIDDEN"), answer
    status, answer, _ = alice.call("GET", "/v1/accounts")
    assert status == 200 and [row["account_id"] for row in answer["accounts"]] == [world.accounts["own"]], answer
    status, answer, _ = alice.call("GET", "/v1/accounts?owner=bob")
    assert (status, answer["code"]) == (403, "FORBIDDEN"), answer


@pytest.mark.parametrize("column", [*[name for name in ROLES if name != "OPERATOR"], "OPERATOR"])
def test_only_an_operator_starts_a_rebuild(world: World, column: str) -> None:
    """Last in the module: the OPERATOR's cell (asked last) starts a real rebuild."""
    status, answer, _ = world.query("POST", "/admin/rebuild", world.as_role(column))
    if column == "OPERATOR":
        assert status == 202 and answer["rebuild"] is not None, answer
    else:
        assert (status, answer["code"]) == (403, "FORBIDDEN"), answer
        assert answer["allowed_roles"] == ["OPERATOR"], answer
