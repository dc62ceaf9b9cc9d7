"""The Authorization header into a principal (gateway/authentication.py): API keys from the
store (revocation seen on the next request), JWTs, and every malformed header a 401 with
its code and RFC 6750's challenge."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest

from foundation.api_keys import create_key, revoke_key
from foundation.settings import Settings
from gateway.authentication import Authenticator
from gateway.errors import ApiError, GatewayCode
from ledger.principals import Principal, Role
from tests.credentials import Credentials, secured

OPERATOR = frozenset({Role.OPERATOR})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_environment({}, **secured(tmp_path))


def refusal(authenticator: Authenticator, headers: list[str]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        authenticator.principal(headers)
    assert caught.value.status == 401
    return caught.value


def test_an_api_key_is_the_principal_of_its_record_until_it_is_revoked(settings: Settings) -> None:
    store = settings.auth_api_keys_file
    key, record = create_key(store, name="payments", roles=OPERATOR, now_ms=1)
    authenticator = Authenticator(settings)  # started before the key existed would do as well
    assert authenticator.principal([f"Bearer {key}"]) == Principal(principal_id="payments", roles=OPERATOR)
    assert authenticator.principal([f"bearer   {key} "]).principal_id == "payments"
    revoke_key(store, record.key_id, now_ms=2)
    error = refusal(authenticator, [f"Bearer {key}"])
    assert error.code is GatewayCode.CREDENTIAL_REVOKED
    assert error.headers()["WWW-Authenticate"].startswith('Bearer realm="streamwallet", error="invalid_token"')


def test_a_key_made_after_the_gateway_started_is_accepted_at_once(settings: Settings) -> None:
    authenticator = Authenticator(settings)
    key, _ = create_key(settings.auth_api_keys_file, name="late", roles=OPERATOR, now_ms=1)
    assert authenticator.principal([f"Bearer {key}"]).principal_id == "late"


def test_a_key_with_a_wrong_secret_or_id_is_invalid_and_never_echoed(settings: Settings) -> None:
    key, _ = create_key(settings.auth_api_keys_file, name="payments", roles=OPERATOR, now_ms=1)
    authenticator = Authenticator(settings)
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    for wrong in (flipped, "sw_0123456789abcdef" + key[19:], key[:-1], key + "A", "sw_nonsense"):
        error = refusal(authenticator, [f"Bearer {wrong}"])
        assert error.code is GatewayCode.INVALID_CREDENTIAL and wrong not in str(error.body())
        assert wrong not in error.headers()["WWW-Authenticate"]


def test_a_token_is_verified_and_its_refusals_keep_their_codes(settings: Settings) -> None:
    authenticator = Authenticator(settings)
    credentials = Credentials(settings)
    assert authenticator.principal([f"Bearer {credentials.token('alice', OPERATOR)}"]) == Principal(
        principal_id="alice", roles=OPERATOR
    )
    expired = credentials.token("alice", OPERATOR, exp=int(time.time()) - 3600)
    assert refusal(authenticator, [f"Bearer {expired}"]).code is GatewayCode.CREDENTIAL_EXPIRED
    not_yet = credentials.token("alice", OPERATOR, nbf=int(time.time()) + 3600)
    assert refusal(authenticator, [f"Bearer {not_yet}"]).code is GatewayCode.CREDENTIAL_NOT_YET_VALID
    foreign = jwt.encode({"sub": "alice", "aud": "x", "iss": "y", "exp": int(time.time()) + 60}, "k" * 32)
    assert refusal(authenticator, [f"Bearer {foreign}"]).code is GatewayCode.INVALID_CREDENTIAL


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ([], GatewayCode.UNAUTHENTICATED),
        ([""], GatewayCode.INVALID_CREDENTIAL),
        (["Bearer"], GatewayCode.INVALID_CREDENTIAL),
        (["Bearer "], GatewayCode.INVALID_CREDENTIAL),
        (["Basic YWxpY2U6cGFzcw=="], GatewayCode.INVALID_CREDENTIAL),
        (["Token abc"], GatewayCode.INVALID_CREDENTIAL),
        (["Bearer a", "Bearer b"], GatewayCode.INVALID_CREDENTIAL),
        (["Bearer not-a-jwt"], GatewayCode.INVALID_CREDENTIAL),
    ],
)
def test_a_missing_or_malformed_header_is_401_with_a_challenge(
    settings: Settings, headers: list[str], code: GatewayCode
) -> None:
    error = refusal(Authenticator(settings), headers)
    assert error.code is code and set(error.body()) == {"code", "message", "details"}
    challenge = error.headers()["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="streamwallet"')
    assert ("invalid_token" in challenge) is (code is not GatewayCode.UNAUTHENTICATED)


def test_the_challenge_never_carries_what_rfc_6750_forbids(settings: Settings) -> None:
    """A token whose header names an algorithm full of quotes, backslashes and non-ASCII:
    the message may quote it, the WWW-Authenticate header never carries those characters."""
    header = jwt.utils.base64url_encode(json.dumps({"alg": 'é"\\\r\nX-Evil: 1'}).encode()).decode()
    error = refusal(Authenticator(settings), [f"Bearer {header}.e30.c2ln"])
    challenge = error.headers()["WWW-Authenticate"]
    description = challenge.split('error_description="', 1)[1][:-1]
    assert description and all(" " <= character <= "~" and character not in '"\\' for character in description)
    assert challenge.count('"') == 6
