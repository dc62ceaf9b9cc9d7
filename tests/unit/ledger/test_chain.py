"""The hash chain of each account's events (ledger/chain.py): made by the single writer,
checked by ChainCheck, broken by any change to one event."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.accounts import AccountStatus
from ledger.chain import GENESIS_HASH, HASHED_FIELDS, ChainCheck, _general_content, canonical_content, event_hash
from ledger.commands import Batch, BatchLeg, Deposit, OpenAccount, Transfer, Withdraw
from ledger.errors import ErrorCode
from ledger.events import AccountEvent, EventKind
from ledger.principals import Principal, Role
from tests.unit.ledger.cluster import Cluster, check_deterministic, fresh, make


def _workload() -> Cluster:
    """Opens, deposits, transfers (here and across shards), withdrawals and multi-posting batches."""
    cluster = Cluster(3)
    rng = random.Random(13)
    accounts = ["a@0", "b@0", "c@1", "d@2"]
    for account in accounts:
        cluster.run(make(OpenAccount, account_id=account, currency="USD"))
        cluster.run(make(Deposit, account_id=account, amount=1_000, currency="USD"))
    for _ in range(40):
        source, destination = rng.sample(accounts, 2)
        roll = rng.random()
        if roll < 0.5:
            cluster.submit(
                make(
                    Transfer,
                    from_account_id=source,
                    to_account_id=destination,
                    amount=rng.randint(1, 50),
                    currency="USD",
                )
            )
        elif roll < 0.7:
            cluster.submit(make(Withdraw, account_id=source, amount=rng.randint(1, 20), currency="USD"))
        else:
            legs = [
                BatchLeg(account_id=source, amount=-30, currency="USD"),
                BatchLeg(account_id=destination, amount=29, currency="USD"),
                BatchLeg(account_id=source, amount=-1, currency="USD"),
                BatchLeg(account_id=accounts[0] if source != accounts[0] else accounts[1], amount=2, currency="USD"),
            ]
            cluster.submit(make(Batch, batch_id=f"{fresh('b')}@{rng.randint(0, 2)}", legs=legs))
        cluster.drain(rng)
    return cluster


def _check(events: list[AccountEvent]) -> ChainCheck:
    check = ChainCheck()
    for offset, event in enumerate(events):
        check.add(event, partition=0, offset=offset)
    return check


def test_every_account_chains_from_the_genesis_value() -> None:
    cluster = _workload()
    check = _check(cluster.events)
    assert check.breaks == [] and check.unchained == 0 and check.accounts == 4
    firsts = [event for event in cluster.events if event.sequence == 1]
    assert len(firsts) == 4 and all(event.previous_hash == GENESIS_HASH for event in firsts)
    for account in cluster.accounts():
        newest = max((e for e in cluster.events if e.account_id == account.account_id), key=lambda e: e.sequence)
        assert account.last_hash == newest.hash
    check_deterministic(cluster)  # the hashes are the same on replay, and survive encoding


def test_the_hash_is_sha256_of_the_canonical_content() -> None:
    event = _workload().events[-1]
    content = canonical_content(event)
    assert content.startswith(b'{"account_id":') and b'"hash"' not in content and b'"previous_hash"' in content
    assert len(event.hash) == 64 and event.hash == event_hash(event)
    assert set(HASHED_FIELDS) == {field.name for field in dataclasses.fields(AccountEvent)} - {"hash"}


def test_an_altered_amount_is_named_by_account_sequence_and_offset() -> None:
    events = _workload().events
    index = len(events) // 2
    target = events[index]
    altered = [*events]
    altered[index] = dataclasses.replace(target, amount=target.amount + 1)
    (found,) = _check(altered).breaks
    assert (found.account_id, found.sequence, found.offset) == (target.account_id, target.sequence, index)
    assert "altered" in found.reason


def test_an_alteration_with_a_recomputed_hash_breaks_the_next_link() -> None:
    events = _workload().events
    index = next(i for i, e in enumerate(events) if e.sequence == 3)
    forged = dataclasses.replace(events[index], amount=events[index].amount + 100)
    forged.hash = event_hash(forged)
    altered = [*events]
    altered[index] = forged
    (found,) = _check(altered).breaks
    following = next(i for i, e in enumerate(events) if e.account_id == forged.account_id and e.sequence == 4)
    assert (found.account_id, found.sequence, found.offset) == (forged.account_id, 4, following)
    assert "previous_hash" in found.reason


def test_a_deleted_event_breaks_the_sequence_and_the_link() -> None:
    events = _workload().events
    index = next(i for i, e in enumerate(events) if e.sequence == 2)
    check = _check([*events[:index], *events[index + 1 :]])
    assert {(b.account_id, b.sequence) for b in check.breaks} == {(events[index].account_id, 3)}
    assert len(check.breaks) == 2  # the sequence gap and the broken link, both at the next event


def test_events_from_before_the_chain_are_counted_not_checked() -> None:
    events = _workload().events
    account = events[0].account_id
    mine = [e for e in events if e.account_id == account]
    legacy = [dataclasses.replace(e, previous_hash="", hash="") for e in mine[:3]]
    rechained = []
    previous = GENESIS_HASH  # an account opened before the upgrade starts its chain at its first event after it
    for event in mine[3:]:
        again = dataclasses.replace(event, previous_hash=previous)
        again.hash = event_hash(again)
        previous = again.hash
        rechained.append(again)
    check = _check([*legacy, *rechained])
    assert check.breaks == [] and check.unchained == 3
    check = _check([*legacy, *rechained[:1], dataclasses.replace(rechained[1], hash="")])
    assert [b.reason for b in check.breaks] == ["no hash after a chained event"]  # a chain never stops


_TEXT = st.text(max_size=12)  # any code point: escapes, surrogates, non-ASCII
_INT = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@st.composite
def _events(draw: st.DrawFn) -> AccountEvent:
    optional_text = st.none() | _TEXT
    return AccountEvent(
        account_id=draw(_TEXT),
        sequence=draw(_INT),
        kind=draw(st.sampled_from(EventKind)),
        amount=draw(_INT),
        held_change=draw(_INT),
        currency=draw(_TEXT),
        balance=draw(_INT),
        held=draw(_INT),
        available=draw(_INT),
        pending_in=draw(_INT),
        pending_out=draw(_INT),
        lower_limit=draw(_INT),
        upper_limit=draw(_INT),
        status=draw(st.sampled_from(AccountStatus)),
        parent_account_id=draw(optional_text),
        metadata=draw(st.none() | st.dictionaries(_TEXT, _TEXT, max_size=3)),
        command_id=draw(_TEXT),
        dedup_id=draw(_TEXT),
        correlation_id=draw(optional_text),
        counterparty_account_id=draw(optional_text),
        code=draw(st.none() | st.sampled_from(ErrorCode)),
        occurred_at_ms=draw(_INT),
        previous_hash=draw(_TEXT),
        owner=draw(_TEXT),
        principal=Principal(principal_id=draw(_TEXT), roles=frozenset(draw(st.sets(st.sampled_from(Role))))),
    )


@given(_events())
@settings(max_examples=500)
def test_the_fast_canonical_content_is_the_general_one(event: AccountEvent) -> None:
    assert canonical_content(event) == _general_content(event)


def test_an_event_the_fast_way_cannot_write_is_hashed_the_general_way() -> None:
    event = _workload().events[-1]
    odd = dataclasses.replace(event, amount=2.5, kind="TRANSFERRED")  # type: ignore[arg-type]
    assert canonical_content(odd) == _general_content(odd)
    assert b'"amount":2.5' in canonical_content(odd) and b'"kind":"TRANSFERRED"' in canonical_content(odd)


def test_the_content_version_1_is_unchanged() -> None:
    """A hash written by any earlier version still verifies: pinned on one event."""
    event = AccountEvent(
        account_id="acct-é",
        sequence=7,
        kind=EventKind.TRANSFER_CREDITED,
        amount=-1_250,
        held_change=0,
        currency="EUR",
        balance=10_000,
        held=500,
        available=9_500,
        pending_in=0,
        pending_out=3,
        lower_limit=-5,
        upper_limit=2**63 - 1,
        status=AccountStatus.ACTIVE,
        parent_account_id=None,
        metadata={"memo": 'a "quoted"\nline', "b": "\u2603"},
        command_id="cmd-1",
        dedup_id="d-1",
        correlation_id="t-1",
        counterparty_account_id=None,
        code=ErrorCode.HOLD_EXPIRED,
        occurred_at_ms=1_764_460_800_000,
        previous_hash=GENESIS_HASH,
        owner="owner-1",
        principal=Principal(principal_id="svc", roles=frozenset({Role.OPERATOR, Role.ADMIN})),
    )
    assert event_hash(event) == "60163e3a2cdd8c20f297c7a8f47badf6ce620a1ca6500b7f2cbe6ebdd7bb759c"


def test_a_principal_kept_for_the_chain_is_never_hashed_for_another() -> None:
    """The chain keeps each principal's JSON with the object: equal principals, other
    principals and one whose roles may change (not kept) each hash as the general way says."""
    event = _workload().events[-1]
    roles: set[Role] = {Role.OWNER}
    changing = Principal(principal_id="p", roles=roles)  # type: ignore[arg-type]
    principals = [
        Principal(principal_id="p", roles=frozenset({Role.OWNER})),
        Principal(principal_id="p", roles=frozenset({Role.OWNER})),
        Principal(principal_id="q", roles=frozenset({Role.OWNER, Role.AUDITOR})),
        changing,
    ]
    for principal in principals:
        with_principal = dataclasses.replace(event, principal=principal)
        assert canonical_content(with_principal) == _general_content(with_principal)
    roles.add(Role.ADMIN)
    with_principal = dataclasses.replace(event, principal=changing)
    assert b'"roles":["ADMIN","OWNER"]' in canonical_content(with_principal)
    assert canonical_content(with_principal) == _general_content(with_principal)
