"""JWT verification (foundation/tokens.py) with real keys: HS256 from a secret file, RS256
and ES256 from a PEM file or a JWKS file; every claim check, the clock skew on both
sides of its bound, the algorithm pinned to the key, and settings that cannot work
refused at start without showing a secret."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import hypothesis
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import strategies

from foundation.settings import Settings
from foundation.tokens import CredentialCode, CredentialError, CredentialSettingsError, TokenVerifier, roles_of
from ledger.principals import Principal, Role

AUDIENCE = "streamwallet-api"
ISSUER = "https://id.example.test/"
SKEW_S = 60
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(private_key: Any) -> bytes:
    public: bytes = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public


def jwk(private_key: Any, kid: str) -> dict[str, Any]:
    algorithm: Any = (
        jwt.algorithms.RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    )
    return {**json.loads(algorithm.to_jwk(private_key.public_key())), "kid": kid, "use": "sig"}


def settings_with(tmp_path: Path, **files: bytes | str) -> Settings:
    """Settings whose key files hold `files` (setting name -> content)."""
    overrides: dict[str, Any] = {
        "auth_jwt_audience": AUDIENCE,
        "auth_jwt_issuer": ISSUER,
        "auth_clock_skew_s": SKEW_S,
        "auth_api_keys_file": tmp_path / "keys.json",
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        overrides[name] = path
    return Settings.from_environment({}, **overrides)


def claims(**changes: Any) -> dict[str, Any]:
    now_s = int(time.time())
    payload = {"sub": "alice", "aud": AUDIENCE, "iss": ISSUER, "iat": now_s, "exp": now_s + 300, "roles": ["OWNER"]}
    payload.update({name: now_s + value if isinstance(value, FromNow) else value for name, value in changes.items()})
    return {name: value for name, value in payload.items() if value is not None}


SECRET = secrets.token_hex(32)
JSON_VALUES = strategies.recursive(
    strategies.none()
    | strategies.booleans()
    | strategies.integers()
    | strategies.floats()
    | strategies.text(max_size=8),
    lambda children: (
        strategies.lists(children, max_size=3)
        | strategies.dictionaries(strategies.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture
def hs256(tmp_path: Path) -> TokenVerifier:
    return TokenVerifier(settings_with(tmp_path, auth_jwt_hs256_secret_file=SECRET + "\n"))


def hs(payload: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def refused(verifier: TokenVerifier, token: str) -> CredentialCode:
    with pytest.raises(CredentialError) as caught:
        verifier.verify(token)
    assert SECRET not in caught.value.message
    return caught.value.code


def test_a_valid_hs256_token_is_its_subject_with_its_roles(hs256: TokenVerifier) -> None:
    principal = hs256.verify(hs(claims(roles=["owner", "AUDITOR", "superuser"])))
    assert principal == Principal(principal_id="alice", roles=frozenset({Role.OWNER, Role.AUDITOR}))


INVALID = CredentialCode.INVALID_CREDENTIAL
EXPIRED = CredentialCode.CREDENTIAL_EXPIRED
NOT_YET = CredentialCode.CREDENTIAL_NOT_YET_VALID


class FromNow(int):
    """A time claim given as seconds from the moment the token is made (so a slow run
    cannot move a case across the skew's edge)."""


# (what, claims, the code; None: accepted). Times are far from the skew's edge (30 s either
# side of 60 s), so the clock moving while the test runs cannot change an answer.
CLAIM_CASES: list[tuple[str, dict[str, Any], CredentialCode | None]] = [
    ("another audience", {"aud": "another-api"}, INVALID),
    ("audiences without ours", {"aud": ["a", "b"]}, INVALID),
    ("audiences with ours", {"aud": ["a", AUDIENCE]}, None),
    ("another issuer", {"iss": "https://evil.example.test/"}, INVALID),
    ("no exp", {"exp": None}, INVALID),
    ("no sub", {"sub": None}, INVALID),
    ("no aud", {"aud": None}, INVALID),
    ("no iss", {"iss": None}, INVALID),
    ("sub not a string", {"sub": 42}, INVALID),
    ("sub empty", {"sub": ""}, INVALID),
    ("sub too long", {"sub": "x" * 129}, INVALID),
    ("sub with a newline", {"sub": "al\nice"}, INVALID),
    ("exp not a number", {"exp": "tomorrow"}, INVALID),
    ("expired beyond the skew", {"exp": FromNow(-SKEW_S - 30)}, EXPIRED),
    ("expired within the skew", {"exp": FromNow(-SKEW_S + 30)}, None),
    ("nbf beyond the skew", {"nbf": FromNow(SKEW_S + 30)}, NOT_YET),
    ("nbf within the skew", {"nbf": FromNow(SKEW_S - 30)}, None),
    ("iat beyond the skew", {"iat": FromNow(SKEW_S + 30)}, NOT_YET),
    ("iat within the skew", {"iat": FromNow(SKEW_S - 30)}, None),
    ("no roles", {"roles": None}, None),
]


@pytest.mark.parametrize(("what", "changes", "code"), CLAIM_CASES, ids=[case[0] for case in CLAIM_CASES])
def test_claims_are_checked(
    hs256: TokenVerifier, what: str, changes: dict[str, Any], code: CredentialCode | None
) -> None:
    token = hs(claims(**changes))
    if code is None:
        assert hs256.verify(token).principal_id == "alice"
    else:
        assert refused(hs256, token) is code


def test_a_token_the_secret_did_not_sign_or_that_is_not_a_token_is_refused(hs256: TokenVerifier) -> None:
    good = hs(claims())
    header, payload, signature = good.split(".")
    forged_payload = jwt.utils.base64url_encode(json.dumps(claims(sub="root", roles=["ADMIN"])).encode()).decode()
    for token in (
        hs(claims(), secret=secrets.token_hex(32)),
        f"{header}.{forged_payload}.{signature}",
        f"{header}.{payload}.",
        jwt.encode(claims(), "", algorithm="none"),
        "not a token",
        "a.b.c",
        "",
        "x" * 9000,
        good + "x",
    ):
        assert refused(hs256, token) is INVALID, token[:40]


@hypothesis.settings(
    max_examples=300, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)
@hypothesis.given(
    strategies.text(max_size=200)
    | strategies.from_regex(r"[A-Za-z0-9_=-]{0,60}\.[A-Za-z0-9_=-]{0,60}\.[A-Za-z0-9_=-]{0,60}", fullmatch=True)
    | strategies.builds(
        lambda header, payload: (
            ".".join(jwt.utils.base64url_encode(json.dumps(part).encode()).decode() for part in (header, payload))
            + ".c2ln"
        ),
        strategies.dictionaries(strategies.sampled_from(["alg", "kid", "typ", "crit", "b64"]), JSON_VALUES),
        strategies.dictionaries(strategies.sampled_from(["sub", "aud", "iss", "exp", "nbf", "iat"]), JSON_VALUES),
    )
)
def test_no_text_is_anything_but_a_refusal(hs256: TokenVerifier, text: str) -> None:
    with pytest.raises(CredentialError):
        hs256.verify(text)


def test_rs256_and_es256_with_a_pem_key(tmp_path: Path) -> None:
    rs = TokenVerifier(settings_with(tmp_path / "rs", auth_jwt_public_key_file=pem(RSA_KEY)))
    es = TokenVerifier(settings_with(tmp_path / "es", auth_jwt_public_key_file=pem(EC_KEY)))
    assert rs.verify(jwt.encode(claims(), RSA_KEY, algorithm="RS256")).principal_id == "alice"
    assert es.verify(jwt.encode(claims(), EC_KEY, algorithm="ES256")).principal_id == "alice"
    # Each key serves its one algorithm: ES256 is not checked with an RSA key, nor the reverse.
    assert refused(rs, jwt.encode(claims(), EC_KEY, algorithm="ES256")) is INVALID
    assert refused(es, jwt.encode(claims(), RSA_KEY, algorithm="RS256")) is INVALID
    assert refused(rs, jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256")) is INVALID
    assert refused(rs, jwt.encode(claims(), RSA_KEY, algorithm="RS512")) is INVALID
    assert refused(rs, jwt.encode(claims(exp=FromNow(-SKEW_S - 30)), RSA_KEY, algorithm="RS256")) is EXPIRED


def test_hs256_keyed_with_the_public_key_is_refused(tmp_path: Path) -> None:
    """Algorithm confusion: a token that says HS256 and is signed with the (public) PEM
    bytes as its secret must never pass, whether HS256 is configured or not."""
    public = pem(RSA_KEY)
    only_rsa = TokenVerifier(settings_with(tmp_path / "a", auth_jwt_public_key_file=public))
    both = TokenVerifier(
        settings_with(tmp_path / "b", auth_jwt_public_key_file=public, auth_jwt_hs256_secret_file=SECRET)
    )
    signed = ".".join(
        jwt.utils.base64url_encode(json.dumps(part).encode()).decode()
        for part in ({"alg": "HS256", "typ": "JWT"}, claims())
    )
    signature = hmac.new(public, signed.encode(), hashlib.sha256).digest()
    forged = f"{signed}.{jwt.utils.base64url_encode(signature).decode()}"
    assert refused(only_rsa, forged) is INVALID
    assert refused(both, forged) is INVALID


def test_a_jwks_key_is_chosen_by_kid(tmp_path: Path) -> None:
    symmetric = {"kty": "oct", "k": jwt.utils.base64url_encode(SECRET.encode()).decode(), "kid": "s1"}
    document = {"keys": [jwk(RSA_KEY, "r1"), jwk(EC_KEY, "e1"), symmetric]}
    verifier = TokenVerifier(settings_with(tmp_path, auth_jwks_file=json.dumps(document)))
    assert verifier.verify(jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "r1"})).principal_id
    assert verifier.verify(jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "e1"})).principal_id
    for token in (
        jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "e1"}),  # the kid of another algorithm
        jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "r1"}),
        jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "unknown"}),
        jwt.encode(claims(), RSA_KEY, algorithm="RS256"),  # no kid, and more than one key
        hs(claims(), kid="s1"),  # a symmetric key in a JWKS is left out (it would be public)
    ):
        assert refused(verifier, token) is INVALID


def test_a_jwks_of_one_key_serves_tokens_without_kid_and_is_read_again_when_it_changes(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, auth_jwks_file=json.dumps({"keys": [jwk(RSA_KEY, "r1")]}))
    verifier = TokenVerifier(settings)
    assert verifier.verify(jwt.encode(claims(), RSA_KEY, algorithm="RS256")).principal_id == "alice"
    assert settings.auth_jwks_file is not None
    settings.auth_jwks_file.write_text(json.dumps({"keys": [jwk(OTHER_RSA_KEY, "r2")]}))  # the issuer rotated
    assert verifier.verify(jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "r2"}))
    assert refused(verifier, jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "r1"})) is INVALID


def test_a_secret_file_that_changes_into_garbage_keeps_the_last_good_one_and_says_so_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_with(tmp_path, auth_jwt_hs256_secret_file=SECRET)
    verifier = TokenVerifier(settings)
    assert settings.auth_jwt_hs256_secret_file is not None
    short = "short-" + secrets.token_hex(4)
    settings.auth_jwt_hs256_secret_file.write_text(short)
    with caplog.at_level(logging.WARNING):
        assert verifier.verify(hs(claims())).principal_id == "alice"
    assert "cannot be used" in caplog.text and short not in caplog.text and SECRET not in caplog.text
    rotated = secrets.token_hex(32)
    settings.auth_jwt_hs256_secret_file.write_text(rotated)
    assert verifier.verify(hs(claims(), secret=rotated)).principal_id == "alice"
    assert refused(verifier, hs(claims())) is INVALID


RSA_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
P384 = ec.generate_private_key(ec.SECP384R1())
NOT_A_PEM = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
SHORT_SECRET = "only-31-bytes-of-secret-" + secrets.token_hex(4)[:7]
# (what, key files written, other settings)
BAD_SETTINGS: list[tuple[str, dict[str, bytes | str], dict[str, Any]]] = [
    ("a short secret", {"auth_jwt_hs256_secret_file": SHORT_SECRET}, {}),
    ("a secret file that is absent", {}, {"auth_jwt_hs256_secret_file": Path("/nonexistent/secret")}),
    (
        "a PEM that is not one",
        {"auth_jwt_public_key_file": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
        {},
    ),
    ("a small RSA key", {"auth_jwt_public_key_file": pem(RSA_1024)}, {}),
    ("an EC key not on P-256", {"auth_jwt_public_key_file": pem(P384)}, {}),
    ("a JWKS that is not JSON", {"auth_jwks_file": "{keys"}, {}),
    ("a JWKS of a symmetric key", {"auth_jwks_file": json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})}, {}),
    ("a skew past its bound", {}, {"auth_clock_skew_s": 301}),
    ("no audience", {}, {"auth_jwt_audience": ""}),
    ("no issuer", {}, {"auth_jwt_issuer": ""}),
]


@pytest.mark.parametrize(("what", "files", "others"), BAD_SETTINGS, ids=[case[0] for case in BAD_SETTINGS])
def test_settings_that_cannot_verify_are_refused_at_start_naming_the_setting_never_the_secret(
    tmp_path: Path, what: str, files: dict[str, bytes | str], others: dict[str, Any]
) -> None:
    settings = dataclasses.replace(settings_with(tmp_path, **files), **others)
    with pytest.raises(CredentialSettingsError) as caught:
        TokenVerifier(settings)
    assert "STREAMWALLET_AUTH_" in str(caught.value)
    assert SHORT_SECRET not in str(caught.value) and "c2VjcmV0" not in str(caught.value)
    assert SHORT_SECRET not in repr(settings)


def test_roles_come_as_a_list_or_a_string_in_any_case_and_unknown_names_are_ignored() -> None:
    assert roles_of(["Owner", "operator", "root", 7]) == {Role.OWNER, Role.OPERATOR}
    assert roles_of("admin auditor openid") == {Role.ADMIN, Role.AUDITOR}
    assert roles_of({"ADMIN": True}) == frozenset() and roles_of(None) == frozenset()
