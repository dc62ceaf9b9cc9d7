"""Who may ask a worker's web port what (Faust's web server, as one aiohttp middleware):
the credentials of the gateway and the query service (foundation/authentication.py).

    route                                        who
    /health, /ready                              anyone, no credential
    POST /admin/log-level                        OPERATOR, ADMIN
    anything else (/metrics, /metrics.json,
      GET /admin/log-level, /accounts/{id}, ...)   OPERATOR, AUDITOR, ADMIN

A credential is needed when the port listens beyond the loopback interface
(`worker_web_host`) or `worker_web_auth_required` is set; otherwise a request without one
comes from this machine and is answered as before, and one with a credential is held to
its principal's roles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from foundation import read_rules
from foundation.authentication import RequestGate, forbidden, unauthorized
from foundation.settings import Settings
from foundation.tokens import CredentialError

PUBLIC_PATHS = frozenset({"/health", "/ready", "/health/", "/ready/"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WorkerAccess:
    def __init__(self, settings: Settings) -> None:
        self.gate = RequestGate(settings, host=settings.worker_web_host, required=settings.worker_web_auth_required)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        try:
            principal = self.gate.caller(request)
        except CredentialError as error:
            return unauthorized(error)
        if principal is None:
            return await handler(request)
        reading = request.method in ("GET", "HEAD")
        allowed = read_rules.OPERATIONS_READERS if reading else read_rules.OPERATIONS_WRITERS
        if not read_rules.holds_any(principal, allowed):
            return forbidden(principal, "a worker's web port needs an operator's, auditor's or admin's role", allowed)
        return await handler(request)
