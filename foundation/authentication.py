"""Who is asking: the `Authorization: Bearer <credential>` headers of a request verified into
a `Principal`, or a `CredentialError` (401) with a code and a message safe to show. The one
verification the gateway, the query service and the workers' web ports share.

A credential is an API key (`sw_<key id>_<secret>`, foundation/api_keys.py; its record
gives the principal and roles) or a JWT (foundation/tokens.py). Nothing a caller sends is
ever logged or echoed.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from foundation.api_keys import ApiKeyRecord, looks_like_key, parse_key, read_store
from foundation.settings import Settings
from foundation.tokens import CredentialCode, CredentialError, TokenVerifier
from foundation.watched_files import WatchedFile
from ledger.principals import Principal, Role

REALM = "streamwallet"
BEARER = "bearer"


def challenge(code: str, message: str) -> str:
    """RFC 6750's WWW-Authenticate challenge, with error="invalid_token" when a credential was sent."""
    text = f'Bearer realm="{REALM}"'
    if code != CredentialCode.UNAUTHENTICATED:
        text += f', error="invalid_token", error_description="{description(message)}"'
    return text


def description(message: str) -> str:
    """A message as RFC 6750 allows an error_description: printable ASCII without '"' and '\\'."""
    return "".join(character for character in message if " " <= character <= "~" and character not in '"\\')


LOCAL_HOST_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    """Does `host` (a listening address) reach this machine only? An empty host or a
    wildcard (0.0.0.0, ::) listens everywhere: no."""
    if host.lower() in LOCAL_HOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def token_required(*, host: str, required: bool) -> bool:
    """A service listening on `host` needs a credential on every request but health and
    readiness when it is asked to, and always when it listens beyond the loopback interface."""
    return required or not is_loopback(host)


class CredentialVerifier:
    """JWTs with the keys the settings name, API keys from the store (both files re-read when they change)."""

    def __init__(self, settings: Settings) -> None:
        self.tokens = TokenVerifier(settings)
        self.api_keys: WatchedFile[dict[str, ApiKeyRecord]] = WatchedFile(settings.auth_api_keys_file, read_store)

    @property
    def can_verify_anything(self) -> bool:
        return self.tokens.configured or bool(self.api_keys.current())

    def principal(self, authorization: list[str]) -> Principal:
        """The principal of a request's Authorization headers (all of them: more than one is refused)."""
        if not authorization:
            raise CredentialError(
                CredentialCode.UNAUTHENTICATED, "send Authorization: Bearer <a JWT or an API key sw_...>"
            )
        scheme, _, credential = authorization[0].strip().partition(" ")
        credential = credential.strip()
        if len(authorization) > 1 or scheme.lower() != BEARER or not credential:
            raise CredentialError(
                CredentialCode.INVALID_CREDENTIAL, "one Authorization header, Bearer and a credential"
            )
        if looks_like_key(credential):
            return self.api_key_principal(credential)
        return self.tokens.verify(credential)

    def api_key_principal(self, key: str) -> Principal:
        parsed = parse_key(key)
        record = None if parsed is None else self.api_keys.current().get(parsed[0])
        if parsed is None or record is None or not record.matches(parsed[1]):
            raise CredentialError(CredentialCode.INVALID_CREDENTIAL, "the API key is not valid")
        if record.revoked:
            raise CredentialError(CredentialCode.CREDENTIAL_REVOKED, "the API key has been revoked")
        return record.principal()


class RequestGate:
    """Who asks an internal service (the query service, a worker's web port): the verified
    principal of a request, or None for a request without a credential that the service may
    answer as before (it listens on loopback only and is not told to require one)."""

    def __init__(self, settings: Settings, *, host: str, required: bool) -> None:
        self.verifier = CredentialVerifier(settings)
        self.required = token_required(host=host, required=required)

    def caller(self, request: web.Request) -> Principal | None:
        """Raises CredentialError (answer it with `unauthorized`)."""
        headers = request.headers.getall("Authorization", [])
        if not headers and not self.required:
            return None
        return self.verifier.principal(headers)


def unauthorized(error: CredentialError) -> web.Response:
    """The 401 of an internal service: {"error", "code"} and RFC 6750's challenge."""
    return web.json_response(
        {"error": error.message, "code": error.code},
        status=401,
        headers={"WWW-Authenticate": challenge(error.code, error.message)},
    )


def forbidden(principal: Principal, message: str, allowed: frozenset[Role]) -> web.Response:
    """The 403 of an internal service: why, who asked, and which roles may."""
    body = {"error": message, "code": "FORBIDDEN", "principal_id": principal.principal_id}
    return web.json_response({**body, "allowed_roles": sorted(allowed)}, status=403)
