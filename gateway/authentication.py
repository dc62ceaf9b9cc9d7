"""Who is asking the gateway: the `Authorization` headers verified into a `Principal`
(foundation/authentication.py, shared with the query service and the workers), or a 401
with `WWW-Authenticate` and the error body. Every route but the public ones
(`PUBLIC_PATHS`) needs one. Nothing a caller sends is ever logged or echoed.
"""

from __future__ import annotations

import logging

from foundation.authentication import CredentialVerifier, challenge
from foundation.settings import Settings
from foundation.tokens import CredentialError
from gateway.errors import ApiError, GatewayCode
from ledger.principals import Principal

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/ready", "/v1/openapi.json"})


def unauthorized(code: GatewayCode, message: str) -> ApiError:
    """A 401: RFC 6750's challenge, with error="invalid_token" when a credential was sent."""
    return ApiError(code, message, headers={"WWW-Authenticate": challenge(code, message)})


class Authenticator(CredentialVerifier):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if not self.can_verify_anything:
            log.warning(
                "no credential can be verified yet (no JWT key configured, no API key in %s): every request but %s "
                "is refused until `streamwallet apikeys create` makes a key",
                settings.auth_api_keys_file,
                ", ".join(sorted(PUBLIC_PATHS)),
            )

    def principal(self, authorization: list[str]) -> Principal:
        """The principal of a request's Authorization headers, or the gateway's 401."""
        try:
            return super().principal(authorization)
        except CredentialError as error:
            raise unauthorized(GatewayCode(error.code.value), error.message) from None
