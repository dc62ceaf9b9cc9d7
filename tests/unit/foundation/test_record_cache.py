"""The decoded-record cache: bounded, never stale, keeps what is read again, and its memory
does not grow under churn once it is full."""

from __future__ import annotations

import collections
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation.record_cache import RecordCache

ENTRIES = 64
Slot = tuple[str, str]


def table_bytes(cache: RecordCache[Slot]) -> int:
    """The memory of the cache's own tables (not of the records)."""
    return sum(sys.getsizeof(generation) for generation in (cache._young, cache._old))


def test_it_holds_at_most_its_entries_and_keeps_the_newest() -> None:
    cache: RecordCache[Slot] = RecordCache(ENTRIES)
    for number in range(10 * ENTRIES):
        cache.put(("a", str(number)), number)
        assert len(cache) <= ENTRIES
    newest = range(9 * ENTRIES + ENTRIES // 2, 10 * ENTRIES)
    assert [cache.get(("a", str(number))) for number in newest] == list(newest)
    assert cache.get(("a", "0")) is None


def test_a_record_read_again_stays_while_others_pass_through() -> None:
    cache: RecordCache[Slot] = RecordCache(ENTRIES)
    cache.put(("a", "hot"), "hot")
    for number in range(20 * ENTRIES):
        cache.put(("a", str(number)), number)
        if number % (ENTRIES // 4) == 0:
            assert cache.get(("a", "hot")) == "hot", f"evicted after {number} others"


def test_a_record_put_again_is_never_served_stale() -> None:
    cache: RecordCache[Slot] = RecordCache(4)
    cache.put(("a", "x"), "first")
    cache.put(("a", "y"), 1)  # the young generation is full: "first" is old now
    cache.put(("a", "z"), 2)
    cache.put(("a", "x"), "second")  # young again, while the old generation still holds "first"
    assert cache.get(("a", "x")) == "second"
    cache.put(("a", "w"), 3)  # the young generation, with "second", becomes the old one
    assert cache.get(("a", "x")) == "second"
    cache.discard(("a", "x"))
    assert cache.get(("a", "x")) is None


def test_its_tables_do_not_grow_under_churn() -> None:
    """An OrderedDict under the same churn grows its table by about 70%, which is why the
    worker's memory grew after its cache was full; these generations do not."""
    cache: RecordCache[Slot] = RecordCache(100_000)
    first = 0
    for number in range(200_000):  # fills it
        cache.put(("a", str(number)), number)
        first = max(first, table_bytes(cache))
    for number in range(200_000, 1_000_000):
        cache.put(("a", str(number)), number)
        if number % 997 == 0:
            cache.get(("a", str(number - 30_000)))
    assert table_bytes(cache) <= first

    ordered: collections.OrderedDict[str, int] = collections.OrderedDict()  # what it replaced
    for number in range(100_000):
        ordered[str(number)] = number
    filled = sys.getsizeof(ordered)
    for number in range(100_000, 300_000):
        ordered[str(number)] = number
        ordered.popitem(last=False)
    assert sys.getsizeof(ordered) > 1.5 * filled


def test_it_needs_room_for_two() -> None:
    with pytest.raises(ValueError, match="2 entries"):
        RecordCache(1)


_OPS = st.lists(
    st.tuples(st.sampled_from(["put", "get", "discard", "clear"]), st.integers(min_value=0, max_value=12)),
    max_size=200,
)


@given(ops=_OPS, entries=st.integers(min_value=2, max_value=9))
@settings(max_examples=300, deadline=None)
def test_against_a_dict(ops: list[tuple[str, int]], entries: int) -> None:
    """Whatever it answers is the newest value put under the slot, and it holds at most its
    entries; the newest value put is always there."""
    cache: RecordCache[Slot] = RecordCache(entries)
    model: dict[tuple[str, str], int] = {}
    version = 0
    for op, key in ops:
        slot = ("t", str(key))
        if op == "put":
            version += 1
            cache.put(slot, version)
            model[slot] = version
            assert cache.get(slot) == version
        elif op == "get":
            assert cache.get(slot) in (None, model.get(slot))
        elif op == "discard":
            cache.discard(slot)
            model.pop(slot, None)
            assert cache.get(slot) is None
        else:
            cache.clear()
            model.clear()
        assert len(cache) <= entries
