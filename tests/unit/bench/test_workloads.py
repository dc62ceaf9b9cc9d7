from __future__ import annotations

from bench.workloads import one_key_per_partition
from topologies import partition_for


def test_one_key_per_partition_reaches_every_partition() -> None:
    keys = one_key_per_partition("probe-r1", 8)
    assert [partition_for(key, 8) for key in keys] == list(range(8))
    assert all(key.startswith("probe-r1-") for key in keys)
