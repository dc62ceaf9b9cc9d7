"""The audit sink (sinks/audit.py) against a real chDB store: AuditEvents written to the
`audit` table read back as a page of the trail, oldest first, with their principals and
outcomes; a batch written twice changes nothing; pages follow their cursor; a rebuild of
the views leaves the trail as it was."""

from __future__ import annotations

from typing import Any

import pytest

from codec import Codec
from foundation.settings import Settings
from ledger.audit import AuditEvent, AuditOutcome, AuditSource
from ledger.principals import ANONYMOUS, Principal, Role
from sinks import schema
from sinks.audit import AuditCursor, AuditSink, audit_page
from sinks.rebuild import SHADOW_SUFFIX, swap_in
from tests.unit.sinks.support import FakeMessage

AT_MS = 1_795_600_000_000
OPERATOR = Principal(principal_id="ops", roles=frozenset({Role.OPERATOR, Role.AUDITOR}))
OWNER = Principal(principal_id="alice", roles=frozenset({Role.OWNER}))


def _event(index: int, principal: Principal, outcome: AuditOutcome, source: AuditSource) -> AuditEvent:
    denied = outcome is AuditOutcome.DENIED
    return AuditEvent(
        principal=principal,
        action="LockAccount",
        account_id=f"acct-{index % 2}",
        command_id=f"cmd-{index}",
        outcome=outcome,
        code="FORBIDDEN" if denied else "",
        message="no" if denied else "",
        source=source,
        occurred_at_ms=AT_MS + index,
    )


TRAIL = [
    _event(0, OPERATOR, AuditOutcome.ALLOWED, AuditSource.SHARD),
    _event(1, OWNER, AuditOutcome.DENIED, AuditSource.GATEWAY),
    _event(2, ANONYMOUS, AuditOutcome.DENIED, AuditSource.GATEWAY),
    _event(3, OWNER, AuditOutcome.DENIED, AuditSource.SHARD),
]


def _messages(codec: Codec) -> list[FakeMessage]:
    # Across two partitions, not in time order within the batch.
    return [
        FakeMessage(index % 2, index // 2, codec.encode(event), event.account_id.encode(), "streamwallet.audit")
        for index, event in reversed(list(enumerate(TRAIL)))
    ]


def _sink(clickhouse: Any, database: str) -> AuditSink:
    return AuditSink(Settings(), clickhouse, database=database)


def _expected(event: AuditEvent) -> dict[str, Any]:
    return {
        "principal_id": event.principal.principal_id,
        "roles": sorted(event.principal.roles),
        "action": event.action,
        "account_id": event.account_id,
        "command_id": event.command_id,
        "outcome": event.outcome.value,
        "code": event.code,
        "message": event.message,
        "source": event.source.value,
        "occurred_at_ms": event.occurred_at_ms,
    }


def test_the_trail_reads_back_oldest_first_once_however_often_it_is_written(clickhouse: Any, database: str) -> None:
    sink = _sink(clickhouse, database)
    sink.write(_messages(Codec()))
    sink.write(_messages(Codec()))  # redelivered after a crash before the progress was stored
    page = audit_page(clickhouse, database)
    assert page.entries == [_expected(event) for event in TRAIL]
    assert page.next_cursor is None
    assert sink.progress() == {0: 2, 1: 2}


def test_pages_follow_their_cursor_and_filters_narrow_them(clickhouse: Any, database: str) -> None:
    _sink(clickhouse, database).write(_messages(Codec()))
    first = audit_page(clickhouse, database, limit=3)
    assert [entry["command_id"] for entry in first.entries] == ["cmd-0", "cmd-1", "cmd-2"]
    assert first.next_cursor is not None
    rest = audit_page(clickhouse, database, limit=3, after=AuditCursor.decode(first.next_cursor))
    assert [entry["command_id"] for entry in rest.entries] == ["cmd-3"] and rest.next_cursor is None
    alice = audit_page(clickhouse, database, principal_id="alice")
    assert [entry["command_id"] for entry in alice.entries] == ["cmd-1", "cmd-3"]
    assert [entry["command_id"] for entry in audit_page(clickhouse, database, account_id="acct-0").entries] == [
        "cmd-0",
        "cmd-2",
    ]


@pytest.mark.parametrize("text", ["", "1-2", "a-b-c", "1-2-3-4", "-1-2-3", "1" * 21 + "-0-0"])
def test_a_cursor_not_made_by_a_page_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        AuditCursor.decode(text)


def test_a_rebuild_of_the_views_keeps_the_trail(clickhouse: Any, database: str) -> None:
    _sink(clickhouse, database).write(_messages(Codec()))
    shadow = database + SHADOW_SUFFIX
    schema.migrate(clickhouse, shadow)  # a fresh shadow: its audit table is empty
    swap_in(clickhouse, shadow=shadow, database=database)
    assert len(audit_page(clickhouse, database).entries) == len(TRAIL)
