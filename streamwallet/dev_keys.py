"""The local stack's API keys: `./sw up` makes one key with ADMIN and OPERATOR (the demo
uses it: it opens accounts and deposits) and one OWNER key, prints both once with how to
use them, and revokes the previous run's (keys never pile up valid). They are ordinary
keys in the ordinary store: nothing about them is a back door, and nothing is stored in
clear. The demo run on its own (`streamwallet demo`) makes a key for itself and revokes
it when it ends."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

from foundation.api_keys import ApiKeyRecord, check_identity, editing, generate
from foundation.settings import Settings
from ledger.principals import Role

DEV_ADMIN_NAME = "dev-admin"
DEV_OWNER_NAME = "dev-owner"
DEV_ADMIN_ROLES = frozenset({Role.ADMIN, Role.OPERATOR})


@dataclasses.dataclass(frozen=True, slots=True)
class DevKeys:
    admin: str  # ADMIN and OPERATOR
    owner: str  # OWNER, principal dev-owner


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _revoke_named(records: dict[str, ApiKeyRecord], name: str, now_ms: int) -> None:
    for key_id, record in list(records.items()):
        if record.name == name and not record.revoked:
            records[key_id] = dataclasses.replace(record, revoked_at_ms=now_ms)


def replace_key(settings: Settings, *, name: str, roles: frozenset[Role]) -> str:
    """A new key named `name`; every earlier key of that name is revoked."""
    check_identity(name=name, roles=roles, owner_of=None)
    now_ms = _now_ms()
    with editing(settings.auth_api_keys_file) as records:
        _revoke_named(records, name, now_ms)
        key, record = generate(name=name, roles=roles, principal_id=name, now_ms=now_ms)
        records[record.key_id] = record
    return key


def issue_dev_keys(settings: Settings) -> DevKeys:
    return DevKeys(
        admin=replace_key(settings, name=DEV_ADMIN_NAME, roles=DEV_ADMIN_ROLES),
        owner=replace_key(settings, name=DEV_OWNER_NAME, roles=frozenset({Role.OWNER})),
    )


def usage(keys: DevKeys, settings: Settings) -> str:
    return (
        f"\nAPI keys for this run (the previous run's are revoked; shown once, stored hashed in "
        f"{settings.auth_api_keys_file}):\n"
        f"  {DEV_ADMIN_NAME} (ADMIN, OPERATOR): {keys.admin}\n"
        f"  {DEV_OWNER_NAME} (OWNER):           {keys.owner}\n"
        f"Use one as: curl -H 'Authorization: Bearer <key>' {settings.gateway_url}/v1/accounts/<id>\n"
        "More: streamwallet apikeys create --name <service> --role <role>  (README: Authentication)"
    )


@contextlib.contextmanager
def temporary_key(settings: Settings, *, name: str, roles: frozenset[Role]) -> Iterator[str]:
    """A key for the length of a block, revoked when it ends."""
    key = replace_key(settings, name=name, roles=roles)
    try:
        yield key
    finally:
        with editing(settings.auth_api_keys_file) as records:
            _revoke_named(records, name, _now_ms())
