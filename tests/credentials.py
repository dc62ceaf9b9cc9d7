"""Credentials for tests: HS256 tokens minted with the deployment's own secret file, and
API keys in its own store, for any principal and roles. Every test deployment
(`fresh_settings`) gets its own secret and store, so no test reads the developer's keys."""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt

from foundation.api_keys import create_key
from foundation.settings import PROJECT_ROOT, Settings
from ledger.principals import Role

TOKEN_LIFETIME_S = 600
CLI_TIMEOUT_S = 60
EVERY_ROLE = frozenset(Role)


def secured(folder: Path) -> dict[str, Any]:
    """The settings of a deployment's credentials in `folder`: a fresh HS256 secret, an empty key store."""
    secret_file = folder / "jwt-hs256.secret"
    folder.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(secrets.token_hex(32))
    secret_file.chmod(0o600)
    return {"auth_jwt_hs256_secret_file": secret_file, "auth_api_keys_file": folder / "api-keys.json"}


@dataclasses.dataclass(frozen=True)
class Credentials:
    settings: Settings

    def token(self, subject: str, roles: frozenset[Role] | list[str] = EVERY_ROLE, **claims: Any) -> str:
        """A valid HS256 token for `subject` with `roles`; `claims` override or add (None removes one)."""
        secret_file = self.settings.auth_jwt_hs256_secret_file
        if secret_file is None:
            raise RuntimeError("these settings have no HS256 secret: make them with fresh_settings")
        now_s = int(time.time())
        payload: dict[str, Any] = {
            "sub": subject,
            "aud": self.settings.auth_jwt_audience,
            "iss": self.settings.auth_jwt_issuer,
            "iat": now_s,
            "exp": now_s + TOKEN_LIFETIME_S,
            self.settings.auth_jwt_roles_claim: sorted(str(role) for role in roles),
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(payload, secret_file.read_bytes().strip(), algorithm="HS256")

    def headers(self, subject: str, roles: frozenset[Role] | list[str] = EVERY_ROLE, **claims: Any) -> dict[str, str]:
        return bearer(self.token(subject, roles, **claims))

    def api_key(self, name: str, roles: frozenset[Role], *, owner_of: str | None = None) -> str:
        key, _ = create_key(
            self.settings.auth_api_keys_file, name=name, roles=roles, owner_of=owner_of, now_ms=int(time.time() * 1000)
        )
        return key


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def apikeys_cli(store: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`streamwallet apikeys ...` as a subprocess, on the store `store`."""
    return subprocess.run(
        [sys.executable, "-m", "streamwallet.cli", "apikeys", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "STREAMWALLET_AUTH_API_KEYS_FILE": str(store)},
        cwd=PROJECT_ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
