"""The API key store (foundation/api_keys.py): keys shaped `sw_<key id>_<secret>`, stored
as a salted HMAC-SHA256 and never in clear, a 0600 file rewritten atomically under a
lock, revocation kept; and the `streamwallet apikeys` commands as a subprocess."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from foundation.api_keys import (
    KEY_LENGTH,
    ApiKeyStoreError,
    create_key,
    generate,
    parse_key,
    read_store,
    revoke_key,
)
from ledger.principals import Principal, Role
from tests.credentials import apikeys_cli

OPERATOR = frozenset({Role.OPERATOR})


def key_id_of(key: str) -> str:
    parsed = parse_key(key)
    assert parsed is not None, key
    return parsed[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_key_is_its_id_and_a_secret_and_only_the_salted_hash_is_stored(tmp_path: Path) -> None:
    store = tmp_path / "keys.json"
    key, record = create_key(store, name="payments", roles=OPERATOR, now_ms=1)
    assert len(key) == KEY_LENGTH and key.startswith(f"sw_{record.key_id}_")
    parsed = parse_key(key)
    assert parsed is not None
    key_id, secret = parsed
    assert key_id == record.key_id and record.matches(secret)
    assert not record.matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    text = store.read_text()
    assert secret not in text and key not in text
    assert read_store(store)[key_id] == record
    assert record.principal() == Principal(principal_id="payments", roles=OPERATOR)
    # The salt is per key: the same secret never stores the same digest twice.
    _, other = generate(name="payments", roles=OPERATOR, principal_id="payments", now_ms=1)
    assert other.salt != record.salt and not other.matches(secret)


def test_the_store_is_0600_rewritten_atomically_and_loses_nothing_to_concurrent_writers(tmp_path: Path) -> None:
    store = tmp_path / "deep" / "keys.json"
    keys: list[str] = []

    def make(index: int) -> None:
        keys.append(create_key(store, name=f"service-{index}", roles=OPERATOR, now_ms=index)[0])

    threads = [threading.Thread(target=make, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = read_store(store)
    assert len(records) == 16 and {key_id_of(key) for key in keys} == set(records)
    assert mode(store) == 0o600
    assert sorted(os.listdir(store.parent)) == ["keys.json", "keys.json.lock"]  # no temporary file left


def test_revoking_keeps_the_record_marked_and_is_idempotent(tmp_path: Path) -> None:
    store = tmp_path / "keys.json"
    _, record = create_key(store, name="batch-job", roles=OPERATOR, now_ms=1)
    revoked = revoke_key(store, record.key_id, now_ms=5)
    assert revoked.revoked_at_ms == 5 and read_store(store)[record.key_id].revoked
    assert revoke_key(store, record.key_id, now_ms=9).revoked_at_ms == 5
    assert mode(store) == 0o600
    with pytest.raises(ApiKeyStoreError, match="no API key"):
        revoke_key(store, "0" * 16, now_ms=9)


@pytest.mark.parametrize(
    ("name", "roles", "owner_of", "message"),
    [
        ("", OPERATOR, None, "name"),
        ("a b", OPERATOR, None, "name"),
        ("a|b", OPERATOR, None, "name"),
        ("x" * 129, OPERATOR, None, "name"),
        ("ok", frozenset(), None, "role"),
        ("ok", OPERATOR, "alice", "--owner-of"),
        ("ok", frozenset({Role.OWNER}), "al ice", "--owner-of"),
    ],
)
def test_a_key_needs_a_name_and_a_role(
    tmp_path: Path, name: str, roles: frozenset[Role], owner_of: str | None, message: str
) -> None:
    with pytest.raises(ApiKeyStoreError, match=message):
        create_key(tmp_path / "keys.json", name=name, roles=roles, owner_of=owner_of, now_ms=1)
    assert not (tmp_path / "keys.json").exists()


def test_an_owner_key_acts_as_the_holder_it_was_made_for(tmp_path: Path) -> None:
    _, record = create_key(
        tmp_path / "keys.json", name="alice-phone", roles=frozenset({Role.OWNER}), owner_of="alice", now_ms=1
    )
    assert record.principal() == Principal(principal_id="alice", roles=frozenset({Role.OWNER}))


@pytest.mark.parametrize(
    "content",
    ["{", "[]", '{"version": 2, "keys": []}', '{"version": 1, "keys": [{"key_id": "x"}]}', '{"version": 1}'],
)
def test_a_store_that_is_not_one_is_refused_without_its_content(tmp_path: Path, content: str) -> None:
    store = tmp_path / "keys.json"
    store.write_text(content)
    with pytest.raises(ApiKeyStoreError) as caught:
        read_store(store)
    assert str(store) in str(caught.value) and content not in str(caught.value)
    assert read_store(tmp_path / "absent.json") == {}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sw_",
        "sw_0123456789abcdef",
        "sw_0123456789ABCDEF_" + "a" * 43,
        "sw_0123456789abcdef-" + "a" * 43,
        "sw_0123456789abcdef_" + "a" * 42 + "!",
        "xx_0123456789abcdef_" + "a" * 43,
        "sw_0123456789abcdef_" + "a" * 44,
    ],
)
def test_texts_not_shaped_like_a_key_are_not_parsed(text: str) -> None:
    assert parse_key(text) is None


# -- the CLI, as a subprocess ---------------------------------------------------------------------


def test_the_cli_creates_lists_and_revokes_and_prints_a_key_exactly_once(tmp_path: Path) -> None:
    store = tmp_path / "keys.json"
    made = apikeys_cli(store, "create", "--name", "payments", "--role", "operator", "--role", "AUDITOR")
    assert made.returncode == 0, made.stderr
    keys = [word for word in (made.stdout + made.stderr).split() if word.startswith("sw_")]
    assert len(keys) == 1, made.stdout
    key = keys[0]
    parsed = parse_key(key)
    assert parsed is not None
    key_id, secret = parsed
    assert mode(store) == 0o600 and secret not in store.read_text()

    as_json = apikeys_cli(store, "create", "--name", "alice-phone", "--role", "owner", "--owner-of", "alice", "--json")
    assert as_json.returncode == 0, as_json.stderr
    second = json.loads(as_json.stdout)
    assert second["principal_id"] == "alice" and second["roles"] == ["OWNER"] and as_json.stdout.count("sw_") == 1

    listed = apikeys_cli(store, "list")
    assert listed.returncode == 0 and key_id in listed.stdout and second["key_id"] in listed.stdout
    assert secret not in listed.stdout and "sw_" not in listed.stdout and "OPERATOR" in listed.stdout
    assert apikeys_cli(store, "revoke", key_id).returncode == 0
    rows = {row["key_id"]: row for row in json.loads(apikeys_cli(store, "list", "--json").stdout)}
    assert rows[key_id]["revoked"] is not None and rows[second["key_id"]]["revoked"] is None
    assert set(rows[key_id]) == {"key_id", "name", "principal_id", "roles", "created", "revoked"}
    assert mode(store) == 0o600


@pytest.mark.parametrize(
    ("arguments", "status", "said"),
    [
        (["revoke", "0123456789abcdef"], 1, "no API key"),
        (["create", "--name", "x", "--role", "root"], 2, "invalid choice"),
        (["create", "--name", "x"], 2, "--role"),
        (["create", "--name", "x y", "--role", "admin"], 1, "name"),
        (["create", "--name", "x", "--role", "admin", "--owner-of", "alice"], 1, "--owner-of"),
    ],
)
def test_the_cli_refuses_with_a_reason_and_a_status(
    tmp_path: Path, arguments: list[str], status: int, said: str
) -> None:
    answer = apikeys_cli(tmp_path / "keys.json", *arguments)
    assert answer.returncode == status and said in answer.stderr, answer.stderr
    assert "sw_" not in answer.stdout
