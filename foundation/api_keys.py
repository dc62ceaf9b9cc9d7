"""API keys for services: made, stored hashed, listed and revoked (`streamwallet apikeys`),
and checked by the gateway.

A key is `sw_<key id>_<secret>`: the key id is 8 random bytes in hex (16 characters, not
secret: it names the key in listings and in the store), the secret 32 random bytes in
base64url (43 characters). The key is shown once, when it is made; the store keeps only
a per-key random salt and HMAC-SHA256(salt, secret).

Why a fast keyed hash and not scrypt or bcrypt: slow hashes protect *guessable* secrets
(passwords) from a stolen store; a 256-bit random secret cannot be guessed at any speed,
so a slow hash would only cost every request a few milliseconds of CPU (and hand anyone
who sends many bad keys a cheap way to load the gateway). The salt makes equal secrets
store differently; the key id makes the lookup one dictionary access; the comparison is
constant-time (`hmac.compare_digest`).

The store is one JSON file (`auth_api_keys_file`), mode 0600, rewritten atomically (a
temporary file renamed over it) under an exclusive lock, so concurrent `apikeys` commands
lose nothing and a reader never sees half a file. Revoked keys stay in it, marked.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ledger.commands import is_identifier
from ledger.principals import PRINCIPAL_ID_LENGTH_MAX, Principal, Role

KEY_PREFIX = "sw"
KEY_ID_BYTES = 8
SECRET_BYTES = 32
SALT_BYTES = 16
KEY_ID_LENGTH = 2 * KEY_ID_BYTES  # hex
SECRET_LENGTH = 43  # base64url of 32 bytes, unpadded
KEY_LENGTH = len(KEY_PREFIX) + 1 + KEY_ID_LENGTH + 1 + SECRET_LENGTH
STORE_VERSION = 1
STORE_FILE_MODE = 0o600
STORE_KEYS_MAX = 100_000  # records in one store, revoked ones included
_HEX_DIGITS = frozenset("0123456789abcdef")
_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class ApiKeyStoreError(Exception):
    """The store cannot be read or changed as asked; the message says why (never a secret)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyRecord:
    key_id: str
    name: str  # what the key is for, e.g. "payments-service"
    principal_id: str  # who it acts as: its name, or the owner it was made for (--owner-of)
    roles: frozenset[Role]
    salt: bytes
    digest: bytes  # HMAC-SHA256(salt, secret)
    created_at_ms: int
    revoked_at_ms: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None

    def principal(self) -> Principal:
        return Principal(principal_id=self.principal_id, roles=self.roles)

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(_digest(self.salt, secret), self.digest)


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("ascii", "replace"), hashlib.sha256).digest()


# -- keys ----------------------------------------------------------------------------------------


def parse_key(text: str) -> tuple[str, str] | None:
    """(key id, secret) of a text shaped like an API key, or None."""
    if len(text) != KEY_LENGTH or not text.startswith(KEY_PREFIX + "_"):
        return None
    key_id = text[len(KEY_PREFIX) + 1 : len(KEY_PREFIX) + 1 + KEY_ID_LENGTH]
    separator = text[len(KEY_PREFIX) + 1 + KEY_ID_LENGTH]
    secret = text[-SECRET_LENGTH:]
    if separator != "_" or not set(key_id) <= _HEX_DIGITS or not set(secret) <= _BASE64URL:
        return None
    return key_id, secret


def looks_like_key(text: str) -> bool:
    return text.startswith(KEY_PREFIX + "_")


def generate(*, name: str, roles: Iterable[Role], principal_id: str, now_ms: int) -> tuple[str, ApiKeyRecord]:
    """A new key (the text to hand over, once) and the record that stores it."""
    key_id = secrets.token_hex(KEY_ID_BYTES)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode("ascii")
    salt = secrets.token_bytes(SALT_BYTES)
    record = ApiKeyRecord(
        key_id=key_id,
        name=name,
        principal_id=principal_id,
        roles=frozenset(roles),
        salt=salt,
        digest=_digest(salt, secret),
        created_at_ms=now_ms,
    )
    return f"{KEY_PREFIX}_{key_id}_{secret}", record


def check_identity(*, name: str, roles: frozenset[Role], owner_of: str | None) -> None:
    if not is_identifier(name, PRINCIPAL_ID_LENGTH_MAX):
        raise ApiKeyStoreError(
            f"a key's name is 1..{PRINCIPAL_ID_LENGTH_MAX} printable ASCII characters without spaces or '|'"
        )
    if not roles:
        raise ApiKeyStoreError(f"a key needs at least one role of {[role.value for role in Role]}")
    if owner_of is not None:
        if roles != {Role.OWNER}:
            raise ApiKeyStoreError(
                "--owner-of names the account holder an OWNER key acts for: use it with --role owner only"
            )
        if not is_identifier(owner_of, PRINCIPAL_ID_LENGTH_MAX):
            raise ApiKeyStoreError(
                f"--owner-of is 1..{PRINCIPAL_ID_LENGTH_MAX} printable ASCII characters without spaces or '|'"
            )


# -- the store -----------------------------------------------------------------------------------


def read_store(path: Path) -> dict[str, ApiKeyRecord]:
    """Every record of the store by key id; no file is an empty store."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ApiKeyStoreError(f"the API key store {path} cannot be read: {error.strerror}") from None
    try:
        document = json.loads(text)
        if document.get("version") != STORE_VERSION:
            raise ValueError(f"version {document.get('version')!r}, expected {STORE_VERSION}")
        records = [_record(entry) for entry in document["keys"]]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ApiKeyStoreError(f"the API key store {path} is not a valid store: {type(error).__name__}") from None
    return {record.key_id: record for record in records}


def _record(entry: dict[str, Any]) -> ApiKeyRecord:
    revoked = entry["revoked_at_ms"]
    record = ApiKeyRecord(
        key_id=str(entry["key_id"]),
        name=str(entry["name"]),
        principal_id=str(entry["principal_id"]),
        roles=frozenset(Role(role) for role in entry["roles"]),
        salt=bytes.fromhex(entry["salt"]),
        digest=bytes.fromhex(entry["hmac_sha256"]),
        created_at_ms=int(entry["created_at_ms"]),
        revoked_at_ms=None if revoked is None else int(revoked),
    )
    if len(record.key_id) != KEY_ID_LENGTH or not set(record.key_id) <= _HEX_DIGITS:
        raise ValueError("a key id is not 16 hex digits")
    return record


def _entry(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "name": record.name,
        "principal_id": record.principal_id,
        "roles": sorted(role.value for role in record.roles),
        "salt": record.salt.hex(),
        "hmac_sha256": record.digest.hex(),
        "created_at_ms": record.created_at_ms,
        "revoked_at_ms": record.revoked_at_ms,
    }


def write_store(path: Path, records: Iterable[ApiKeyRecord]) -> None:
    """Replace the store atomically: a 0600 temporary file beside it, synced, renamed over it."""
    document = {"version": STORE_VERSION, "keys": [_entry(record) for record in records]}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, STORE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def editing(path: Path) -> Iterator[dict[str, ApiKeyRecord]]:
    """The store's records to change in place, written back when the block ends without
    an error; other editors wait (an exclusive lock on `<store>.lock`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, STORE_FILE_MODE)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = read_store(path)
        yield records
        if len(records) > STORE_KEYS_MAX:
            raise ApiKeyStoreError(f"the store holds at most {STORE_KEYS_MAX} keys, revoked ones included")
        write_store(path, records.values())
    finally:
        os.close(lock)  # releases the lock


def create_key(
    path: Path, *, name: str, roles: Iterable[Role], owner_of: str | None = None, now_ms: int
) -> tuple[str, ApiKeyRecord]:
    """Make a key and store its record; the key text is returned once and stored nowhere."""
    role_set = frozenset(roles)
    check_identity(name=name, roles=role_set, owner_of=owner_of)
    with editing(path) as records:
        key, record = generate(name=name, roles=role_set, principal_id=owner_of or name, now_ms=now_ms)
        records[record.key_id] = record
    return key, record


def revoke_key(path: Path, key_id: str, *, now_ms: int) -> ApiKeyRecord:
    """Mark a key revoked (once: revoking it again changes nothing); its record stays."""
    with editing(path) as records:
        record = records.get(key_id)
        if record is None:
            raise ApiKeyStoreError(f"no API key {key_id!r} in {path}")
        if not record.revoked:
            record = dataclasses.replace(record, revoked_at_ms=now_ms)
            records[key_id] = record
    return record
