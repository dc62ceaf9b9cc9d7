"""Who may ask the query service what: the same credentials (foundation/authentication.py)
and the same read rules (foundation/read_rules.py) as the gateway, as one middleware in
front of every route (sinks/routes.py, the SQL endpoint, telemetry, and routes added later).

    route                                        who
    /health, /ready                              anyone, no credential
    /accounts/{id}[/...]                         OPERATOR, AUDITOR, ADMIN; OWNER of that account
    /accounts                                    OPERATOR, AUDITOR, ADMIN; OWNER: filtered to its own
    POST /admin/rebuild                          OPERATOR
    /metrics, /metrics.json, GET /admin/log-level   OPERATOR, AUDITOR, ADMIN (POST: OPERATOR, ADMIN)
    anything else (/totals, /reconcile, GET /admin/rebuild, SQL, ...)   OPERATOR, AUDITOR

An owner asking for another's account gets 403 FORBIDDEN, and so does one asking for an
account that does not exist: the answer never says whether another's account exists (the
gateway answers the same). With a min_seq the view has not reached, an account it cannot
yet show to be the owner's is 409 "not_yet" with nothing of the account (the owner's own
new account may simply not be in the view yet).

When is a credential needed: always when the service listens beyond the loopback interface
(`query_host`) or `query_auth_required` is set (401 without one); otherwise a request
without a credential comes from this machine and is answered as before, and one with a
credential is held to its principal's rules (the gateway always forwards its caller's).
A request with ClickHouse's own credentials (Basic, X-ClickHouse-User) to the SQL endpoint
is left to the endpoint's rule: loopback clients only (sinks/sql/policy.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from foundation import read_rules
from foundation.authentication import RequestGate, forbidden, unauthorized
from foundation.read_rules import ReadRefusedError
from foundation.settings import Settings
from foundation.tokens import CredentialError
from ledger.principals import Principal, Role
from sinks.routes import NOT_YET_RETRY_AFTER_S, STATE_KEY
from sinks.service import TooManyWaitersError

PUBLIC_PATHS = frozenset({"/health", "/ready"})
ACCOUNT_PREFIX = "/accounts/{account_id}"
LISTING_PATH = "/accounts"
OPERATIONS_PATHS = frozenset({"/metrics", "/metrics.json", "/admin/log-level"})
SQL_PATHS = frozenset({"/", "/ping"})
REBUILD_PATH = "/admin/rebuild"
BEARER_PREFIX = "bearer "
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_path(request: web.Request) -> str | None:
    """The route's pattern (/accounts/{account_id}/history), None when no route matches."""
    resource = request.match_info.route.resource
    return None if resource is None else resource.canonical


def roles_for(method: str, path: str) -> frozenset[Role]:
    """Who may use a route that is not an account's, by method and pattern."""
    if path == REBUILD_PATH and method == "POST":
        return read_rules.REBUILDERS
    if path in OPERATIONS_PATHS:
        return read_rules.OPERATIONS_READERS if method == "GET" else read_rules.OPERATIONS_WRITERS
    return read_rules.TOTALS_READERS


def min_seq_of(request: web.Request) -> int:
    """The read's min_seq for the ownership check (a malformed one: 0; the route refuses it later)."""
    text = request.query.get("min_seq", "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= len(str(2**63)) else 0


class Access:
    def __init__(self, settings: Settings) -> None:
        self.gate = RequestGate(settings, host=settings.query_host, required=settings.query_auth_required)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = route_path(request)
        if path is None or path in PUBLIC_PATHS:
            return await handler(request)
        headers = request.headers.getall("Authorization", [])
        bearer = any(header.strip().lower().startswith(BEARER_PREFIX) for header in headers)
        if path in SQL_PATHS and not bearer:
            return await handler(request)  # ClickHouse's own credentials: the SQL endpoint's rule
        try:
            principal = self.gate.caller(request)
        except CredentialError as error:
            return unauthorized(error)
        if principal is None:
            return await handler(request)  # a local caller, on a service bound to loopback
        if path == LISTING_PATH:
            return await self.listing(request, handler, principal)
        if path.startswith(ACCOUNT_PREFIX):
            return await self.account_read(request, handler, principal)
        allowed = roles_for(request.method, path)
        if not read_rules.holds_any(principal, allowed):
            return forbidden(
                principal, f"{request.method} {path} needs the role {' or '.join(sorted(allowed))}", allowed
            )
        return await handler(request)

    async def listing(self, request: web.Request, handler: Handler, principal: Principal) -> web.StreamResponse:
        """The listing, filtered to the owner's own accounts for an OWNER."""
        try:
            owner = read_rules.listing_owner(principal, request.query.get("owner"))
        except ReadRefusedError as error:
            return forbidden(principal, error.message, error.allowed)
        if owner is not None and owner != request.query.get("owner"):
            request = request.clone(rel_url=request.rel_url.update_query(owner=owner))
        return await handler(request)

    async def account_read(self, request: web.Request, handler: Handler, principal: Principal) -> web.StreamResponse:
        """An account's read: answered if the principal reads every account or the view says
        it owns this one (after min_seq, if asked); otherwise 403, the same whether the
        account is another's or does not exist."""
        if read_rules.reads_every_account(principal):
            return await handler(request)
        account_id = request.match_info["account_id"]
        if not read_rules.holds_any(principal, read_rules.ACCOUNT_READERS):
            return forbidden(principal, "reading accounts needs a role", read_rules.ACCOUNT_READERS)
        min_seq = min_seq_of(request)
        try:
            reached, record = await request.app[STATE_KEY].reached(account_id, min_seq, row_suffices=True)
        except TooManyWaitersError as error:
            return web.json_response(
                {"error": str(error), "code": "READS_BUSY"}, status=503, headers={"Retry-After": "1"}
            )
        owner = None if record is None else record.get("owner")
        if not read_rules.may_read_account(principal, owner if isinstance(owner, str) else None):
            if not reached:  # the view may not hold the owner's new account yet: not yet, and nothing of it
                return web.json_response(
                    {
                        "status": "not_yet",
                        "message": f"the view has not reached sequence {min_seq} of {account_id}; ask again",
                        "min_seq": min_seq,
                        "view_sequence": None,
                        "account": None,
                    },
                    status=409,
                    headers={"Retry-After": str(NOT_YET_RETRY_AFTER_S)},
                )
            return forbidden(
                principal, f"account {account_id} is not one of this principal's accounts", read_rules.ACCOUNT_READERS
            )
        return await handler(request)
