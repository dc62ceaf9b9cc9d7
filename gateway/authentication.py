"""Who is asking: the `Authorization: Bearer <credential>` header verified into a
`Principal`, or a 401 with `WWW-Authenticate` and the error body.

A credential is an API key (`sw_<key id>_<secret>`, foundation/api_keys.py; its record
gives the principal and roles) or a JWT (gateway/tokens.py). Every route but the public
ones (`PUBLIC_PATHS`) needs one. Nothing a caller sends is ever logged or echoed.
"""

from __future__ import annotations

import logging

from foundation.api_keys import ApiKeyRecord, looks_like_key, parse_key, read_store
from foundation.settings import Settings
from gateway.errors import ApiError, GatewayCode
from gateway.tokens import CredentialError, TokenVerifier
from gateway.watched_files import WatchedFile
from ledger.principals import Principal

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/ready", "/v1/openapi.json"})
REALM = "streamwallet"
BEARER = "bearer"


def unauthorized(code: GatewayCode, message: str) -> ApiError:
    """A 401: RFC 6750's challenge, with error="invalid_token" when a credential was sent."""
    challenge = f'Bearer realm="{REALM}"'
    if code is not GatewayCode.UNAUTHENTICATED:
        challenge += f', error="invalid_token", error_description="{description(message)}"'
    return ApiError(code, message, headers={"WWW-Authenticate": challenge})


def description(message: str) -> str:
    """A message as RFC 6750 allows an error_description: printable ASCII without '"' and '\\'."""
    return "".join(character for character in message if " " <= character <= "~" and character not in '"\\')


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.tokens = TokenVerifier(settings)
        self.api_keys: WatchedFile[dict[str, ApiKeyRecord]] = WatchedFile(settings.auth_api_keys_file, read_store)
        if not self.tokens.configured and not self.api_keys.current():
            log.warning(
                "no credential can be verified yet (no JWT key configured, no API key in %s): every request but %s "
                "is refused until `streamwallet apikeys create` makes a key",
                settings.auth_api_keys_file,
                ", ".join(sorted(PUBLIC_PATHS)),
            )

    def principal(self, authorization: list[str]) -> Principal:
        """The principal of a request's Authorization headers (all of them: more than one is refused)."""
        if not authorization:
            raise unauthorized(GatewayCode.UNAUTHENTICATED, "send Authorization: Bearer <a JWT or an API key sw_...>")
        scheme, _, credential = authorization[0].strip().partition(" ")
        credential = credential.strip()
        if len(authorization) > 1 or scheme.lower() != BEARER or not credential:
            raise unauthorized(GatewayCode.INVALID_CREDENTIAL, "one Authorization header, Bearer and a credential")
        try:
            if looks_like_key(credential):
                return self.api_key_principal(credential)
            return self.tokens.verify(credential)
        except CredentialError as error:
            raise unauthorized(error.code, error.message) from None

    def api_key_principal(self, key: str) -> Principal:
        parsed = parse_key(key)
        record = None if parsed is None else self.api_keys.current().get(parsed[0])
        if parsed is None or record is None or not record.matches(parsed[1]):
            raise CredentialError(GatewayCode.INVALID_CREDENTIAL, "the API key is not valid")
        if record.revoked:
            raise CredentialError(GatewayCode.CREDENTIAL_REVOKED, "the API key has been revoked")
        return record.principal()
