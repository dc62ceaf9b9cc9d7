"""JWT bearer tokens (for the gateway, the query service and the workers' web ports),
verified with PyJWT (never by hand): the keys come from files named by the settings, the
claims are checked by PyJWT with the clock skew as its leeway.

Accepted: HS256 with a shared secret (`auth_jwt_hs256_secret_file`, at least 32 bytes);
RS256 or ES256 (P-256) with the issuer's public key (`auth_jwt_public_key_file`, PEM) or
its JWKS document (`auth_jwks_file`, a key chosen by the token's `kid`). Each key serves
its one algorithm only, so a token can never choose how it is checked (no `none`, no
HS256 keyed with a public key). Required claims: `exp`, `sub`, `aud` (must name
`auth_jwt_audience`), `iss` (must equal `auth_jwt_issuer`); `nbf` and `iat` are checked
when present. The principal is `sub`; its roles are the claim `auth_jwt_roles_claim`
(`roles` by default): a list of role names, or one string of names separated by spaces,
in any case; names that are not our roles are ignored.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from foundation.settings import ENVIRONMENT_PREFIX, Settings
from foundation.watched_files import WatchedFile
from ledger.principals import PRINCIPAL_ID_LENGTH_MAX, Principal, Role

HS256 = "HS256"
RS256 = "RS256"
ES256 = "ES256"
ASYMMETRIC_ALGORITHMS = frozenset({RS256, ES256})
HS256_SECRET_BYTES_MIN = 32  # RFC 7518 3.2: a key at least as long as the hash
RSA_KEY_BITS_MIN = 2048
TOKEN_LENGTH_MAX = 8192  # characters of one token; longer ones are refused unread
ROLES_CLAIM_ENTRIES_MAX = 64  # names in the roles claim looked at
CLOCK_SKEW_S_MAX = 300  # a larger skew setting is refused: it would stretch every token's life
REQUIRED_CLAIMS = ("exp", "sub", "aud", "iss")
ROLES_BY_NAME = {role.value.lower(): role for role in Role}


class CredentialCode(enum.StrEnum):
    """Why a credential was refused (each answered 401); the gateway's error codes of the same names."""

    UNAUTHENTICATED = "UNAUTHENTICATED"  # no credential
    INVALID_CREDENTIAL = "INVALID_CREDENTIAL"  # not a token or key we can verify, or a claim that does not fit
    CREDENTIAL_EXPIRED = "CREDENTIAL_EXPIRED"  # a token past its exp (beyond the clock skew)
    CREDENTIAL_NOT_YET_VALID = "CREDENTIAL_NOT_YET_VALID"  # a token before its nbf or iat (beyond the skew)
    CREDENTIAL_REVOKED = "CREDENTIAL_REVOKED"  # an API key revoked with `streamwallet apikeys revoke`


class CredentialError(Exception):
    """A credential refused: its code (401) and a message safe to show the caller."""

    def __init__(self, code: CredentialCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CredentialSettingsError(ValueError):
    """Settings that cannot verify anything as asked; the message names the setting, never a secret."""


# -- keys from files -----------------------------------------------------------------------------


def _setting(name: str) -> str:
    return ENVIRONMENT_PREFIX + name.upper()


def _read_bytes(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CredentialSettingsError(f"{_setting(setting)}={path} cannot be read: {error.strerror}") from None


def read_hs256_secret(path: Path) -> bytes:
    secret = _read_bytes(path, "auth_jwt_hs256_secret_file").rstrip(b"\r\n")
    if len(secret) < HS256_SECRET_BYTES_MIN:
        setting = _setting("auth_jwt_hs256_secret_file")
        raise CredentialSettingsError(f"{setting}={path} holds a secret shorter than {HS256_SECRET_BYTES_MIN} bytes")
    return secret


def read_public_key(path: Path) -> tuple[str, Any]:
    """(algorithm, key) of a PEM public key: RSA (RS256) or EC P-256 (ES256)."""
    setting = _setting("auth_jwt_public_key_file")
    try:
        key = serialization.load_pem_public_key(_read_bytes(path, "auth_jwt_public_key_file"))
    except (ValueError, TypeError):
        raise CredentialSettingsError(f"{setting}={path} is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_KEY_BITS_MIN:
            raise CredentialSettingsError(f"{setting}={path}: an RSA key of fewer than {RSA_KEY_BITS_MIN} bits")
        return RS256, key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return ES256, key
    raise CredentialSettingsError(f"{setting}={path}: only RSA (RS256) and EC P-256 (ES256) keys are accepted")


def read_jwks(path: Path) -> dict[str | None, tuple[str, Any]]:
    """The RS256 and ES256 signing keys of a JWKS document by `kid` (None for a key without
    one); other keys (symmetric ones above all) are left out."""
    setting = _setting("auth_jwks_file")
    try:
        document = json.loads(_read_bytes(path, "auth_jwks_file"))
        key_set = jwt.PyJWKSet.from_dict(document)
    except (ValueError, TypeError, AttributeError, jwt.PyJWTError) as error:
        raise CredentialSettingsError(
            f"{setting}={path} is not a usable JWKS document ({type(error).__name__})"
        ) from None
    keys: dict[str | None, tuple[str, Any]] = {}
    for key in key_set:
        if key.algorithm_name not in ASYMMETRIC_ALGORITHMS or key.public_key_use not in (None, "sig"):
            continue
        if key.algorithm_name == RS256 and key.key.key_size < RSA_KEY_BITS_MIN:
            continue
        if key.algorithm_name == ES256 and not isinstance(getattr(key.key, "curve", None), ec.SECP256R1):
            continue
        keys[key.key_id] = (key.algorithm_name, key.key)
    if not keys:
        raise CredentialSettingsError(f"{setting}={path} holds no RS256 or ES256 signing key")
    return keys


# -- verification --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Expectations:
    audience: str
    issuer: str
    roles_claim: str
    clock_skew_s: int


def check_expectations(settings: Settings) -> Expectations:
    if not 0 <= settings.auth_clock_skew_s <= CLOCK_SKEW_S_MAX:
        raise CredentialSettingsError(f"{_setting('auth_clock_skew_s')} is 0..{CLOCK_SKEW_S_MAX} seconds")
    for name in ("auth_jwt_audience", "auth_jwt_issuer", "auth_jwt_roles_claim"):
        if not getattr(settings, name):
            raise CredentialSettingsError(f"{_setting(name)} is required to verify tokens")
    return Expectations(
        audience=settings.auth_jwt_audience,
        issuer=settings.auth_jwt_issuer,
        roles_claim=settings.auth_jwt_roles_claim,
        clock_skew_s=settings.auth_clock_skew_s,
    )


class TokenVerifier:
    """Verifies JWTs with the keys the settings name (each file re-read when it changes)."""

    def __init__(self, settings: Settings) -> None:
        self.expectations = check_expectations(settings)
        self.secret = self._watch(settings.auth_jwt_hs256_secret_file, read_hs256_secret)
        self.public_key = self._watch(settings.auth_jwt_public_key_file, read_public_key)
        self.jwks = self._watch(settings.auth_jwks_file, read_jwks)

    @staticmethod
    def _watch(path: Path | None, parse: Any) -> Any:
        return None if path is None else WatchedFile(path, parse)

    @property
    def configured(self) -> bool:
        return any(source is not None for source in (self.secret, self.public_key, self.jwks))

    def verify(self, token: str) -> Principal:
        if len(token) > TOKEN_LENGTH_MAX:
            raise CredentialError(CredentialCode.INVALID_CREDENTIAL, f"the token is longer than {TOKEN_LENGTH_MAX}")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise CredentialError(CredentialCode.INVALID_CREDENTIAL, "not a JWT (nor an API key)") from None
        algorithm, key = self._key(header)
        expected = self.expectations
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=expected.audience,
                issuer=expected.issuer,
                leeway=expected.clock_skew_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as error:
            raise _refusal(error) from None
        return Principal(principal_id=_subject(claims), roles=roles_of(claims.get(expected.roles_claim)))

    def _key(self, header: dict[str, Any]) -> tuple[str, Any]:
        """The one key (and its algorithm) this token's header points at."""
        algorithm = header.get("alg")
        if not isinstance(algorithm, str):
            raise CredentialError(CredentialCode.INVALID_CREDENTIAL, "the token's header names no algorithm")
        if algorithm == HS256 and self.secret is not None:
            return HS256, self.secret.current()
        if algorithm in ASYMMETRIC_ALGORITHMS:
            key_id = header.get("kid")
            if self.jwks is not None:
                keys: dict[str | None, tuple[str, Any]] = self.jwks.current()
                found = keys.get(key_id) if isinstance(key_id, str) or key_id is None else None
                if found is None and key_id is None and len(keys) == 1:
                    found = next(iter(keys.values()))
                if found is not None and found[0] == algorithm:
                    return found
            if self.public_key is not None:
                pinned: tuple[str, Any] = self.public_key.current()
                if pinned[0] == algorithm:
                    return pinned
            if self.jwks is not None:
                raise CredentialError(CredentialCode.INVALID_CREDENTIAL, "the token's key (kid) is not one we know")
        raise CredentialError(
            CredentialCode.INVALID_CREDENTIAL, f"tokens signed with {algorithm[:16]!r} are not accepted here"
        )


REFUSALS: tuple[tuple[type[jwt.PyJWTError], CredentialCode, str], ...] = (
    (jwt.ExpiredSignatureError, CredentialCode.CREDENTIAL_EXPIRED, "the token has expired"),
    (jwt.ImmatureSignatureError, CredentialCode.CREDENTIAL_NOT_YET_VALID, "the token is not valid yet (nbf)"),
    (jwt.InvalidIssuedAtError, CredentialCode.CREDENTIAL_NOT_YET_VALID, "the token was issued in the future (iat)"),
    (jwt.InvalidAudienceError, CredentialCode.INVALID_CREDENTIAL, "the token's audience (aud) is not this API"),
    (jwt.InvalidIssuerError, CredentialCode.INVALID_CREDENTIAL, "the token's issuer (iss) is not the one we trust"),
    (jwt.InvalidSignatureError, CredentialCode.INVALID_CREDENTIAL, "the token's signature does not verify"),
)


def _refusal(error: jwt.PyJWTError) -> CredentialError:
    if isinstance(error, jwt.MissingRequiredClaimError):
        return CredentialError(CredentialCode.INVALID_CREDENTIAL, f"the token has no {error.claim} claim")
    for kind, code, message in REFUSALS:
        if isinstance(error, kind):
            return CredentialError(code, message)
    return CredentialError(CredentialCode.INVALID_CREDENTIAL, "the token is malformed")


def _subject(claims: dict[str, Any]) -> str:
    subject = claims["sub"]
    if not isinstance(subject, str) or not 0 < len(subject) <= PRINCIPAL_ID_LENGTH_MAX or not subject.isprintable():
        raise CredentialError(
            CredentialCode.INVALID_CREDENTIAL,
            f"the token's sub is not 1..{PRINCIPAL_ID_LENGTH_MAX} printable characters",
        )
    return subject


def roles_of(claim: Any) -> frozenset[Role]:
    """Our roles named in a roles claim (a list of names, or names separated by spaces)."""
    names = claim.split() if isinstance(claim, str) else claim if isinstance(claim, list) else []
    return frozenset(
        ROLES_BY_NAME[name.lower()]
        for name in names[:ROLES_CLAIM_ENTRIES_MAX]
        if isinstance(name, str) and name.lower() in ROLES_BY_NAME
    )
