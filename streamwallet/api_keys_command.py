"""`streamwallet apikeys create|list|revoke`: the API keys of services, in the store the
gateway reads (`STREAMWALLET_AUTH_API_KEYS_FILE`, foundation/api_keys.py).

    streamwallet apikeys create --name NAME --role ROLE [--role ROLE ...] [--owner-of HOLDER] [--json]
    streamwallet apikeys list [--json]
    streamwallet apikeys revoke KEY_ID [--json]

`create` prints the key once; only its salted hash is stored, so it can never be shown
again (make another and revoke this one). A revoked key is refused by the gateway on its
next request. Exit status: 0 done, 1 the store refused (the message says why), 2 usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from typing import Any

from foundation.api_keys import ApiKeyRecord, ApiKeyStoreError, create_key, read_store, revoke_key
from foundation.settings import Settings
from ledger.principals import Role

STORE_REFUSED_EXIT_CODE = 1


def add_parser(commands: Any) -> None:
    """The `apikeys` subcommand group, on the CLI's subparsers."""
    parser = commands.add_parser("apikeys", help="make, list and revoke API keys for services")
    actions = parser.add_subparsers(dest="apikeys_action", required=True)
    create = actions.add_parser("create", help="make a key and print it, once")
    create.add_argument("--name", required=True, help="what the key is for; the principal id unless --owner-of")
    create.add_argument(
        "--role",
        action="append",
        required=True,
        type=str.upper,
        choices=[role.value for role in Role],
        help="a role of the key (repeat for several; any case)",
    )
    create.add_argument(
        "--owner-of", help="an OWNER key's account holder: the principal id it acts as (accounts' owner)"
    )
    create.add_argument("--json", action="store_true")
    listing = actions.add_parser("list", help="every key: id, name, principal, roles, created, revoked")
    listing.add_argument("--json", action="store_true")
    revoke = actions.add_parser("revoke", help="refuse a key from its next request on")
    revoke.add_argument("key_id")
    revoke.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.auth_api_keys_file
    try:
        if args.apikeys_action == "create":
            return _create(args, settings)
        if args.apikeys_action == "revoke":
            record = revoke_key(path, args.key_id, now_ms=_now_ms())
            _print(args, _described(record), f"revoked {record.key_id} ({record.name})")
            return 0
        records = sorted(read_store(path).values(), key=lambda record: record.created_at_ms)
        _print(args, [_described(record) for record in records], _table(records))
        return 0
    except ApiKeyStoreError as error:
        print(f"streamwallet apikeys: {error}", file=sys.stderr)
        return STORE_REFUSED_EXIT_CODE


def _create(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.auth_api_keys_file
    roles = frozenset(Role(role) for role in args.role)
    key, record = create_key(path, name=args.name, roles=roles, owner_of=args.owner_of, now_ms=_now_ms())
    if args.json:
        print(json.dumps({**_described(record), "key": key}))
        return 0
    print(
        f"API key {record.key_id} made for {record.name} (principal {record.principal_id}, roles "
        f"{', '.join(sorted(record.roles))}); only its salted hash is kept, in {path}.\n\n{key}\n\n"
        "This is the only time it is shown. Send it as `Authorization: Bearer <the key>`; revoke it with "
        f"`streamwallet apikeys revoke {record.key_id}`."
    )
    return 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _moment(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch_ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _described(record: ApiKeyRecord) -> dict[str, Any]:
    """What may be shown of a key: never its secret, nor its hash."""
    return {
        "key_id": record.key_id,
        "name": record.name,
        "principal_id": record.principal_id,
        "roles": sorted(record.roles),
        "created": _moment(record.created_at_ms),
        "revoked": None if record.revoked_at_ms is None else _moment(record.revoked_at_ms),
    }


def _table(records: list[ApiKeyRecord]) -> str:
    rows = [("KEY ID", "NAME", "PRINCIPAL", "ROLES", "CREATED", "REVOKED")]
    rows += [
        (
            record.key_id,
            record.name,
            record.principal_id,
            ",".join(sorted(record.roles)),
            _moment(record.created_at_ms),
            _moment(record.revoked_at_ms),
        )
        for record in records
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def _print(args: argparse.Namespace, described: Any, text: str) -> None:
    print(json.dumps(described) if args.json else text)
