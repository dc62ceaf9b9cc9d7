"""Invariants in the domain core are explicit checks, never bare `assert` statements:
those vanish under `python -O`, and a broken invariant must stop the worker there too."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ledger.shard import ShardConfig

LEDGER = Path(__file__).resolve().parents[3] / "ledger"


def test_no_assert_statement_in_the_domain_core() -> None:
    files = sorted(LEDGER.rglob("*.py"))
    assert len(files) > 10, files
    found = [
        f"{path.relative_to(LEDGER.parent)}:{node.lineno}"
        for path in files
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Assert)
    ]
    assert found == [], f"bare assert statements (gone under python -O): {found}"


@pytest.mark.parametrize("field", ["retention_ms", "retained_entries_max", "batch_timeout_ms"])
def test_a_bad_shard_config_is_refused_with_a_message(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ShardConfig(**{field: 0})


_UNDER_O = """
import sys
from ledger.errors import InvariantViolation
from ledger.legs import SettleLeg, Tick
from ledger.shard import META_KEY, Shard, ShardConfig
from ledger.state import InMemoryStore, ShardMeta, Table
from tests.unit.ledger.cluster import Cluster
from tests.unit.ledger.test_error_codes import accept_all, capture, deposit, hold, open_

if sys.flags.optimize < 1:
    raise SystemExit("not running under -O")

def stops(message, timestamp_ms, shard):
    try:
        shard.handle(message, timestamp_ms=timestamp_ms)
    except InvariantViolation as error:
        print("stopped:", error)
        return
    raise SystemExit(f"{type(message).__name__} was decided on a broken state")

# A retention queue whose oldest entry is missing.
store = InMemoryStore()
store.put(Table.META, META_KEY, ShardMeta(clock_ms=0, retention_head=0, retention_tail=1))
stops(Tick(worker_id="w"), 10**12, Shard(store=store, config=ShardConfig(), is_local=lambda key: True))

# A capture in flight whose hold vanished before its settle leg arrived.
cluster = Cluster(3)
accept_all(cluster, open_("A@0"), open_("X@1"), deposit("A@0", 100), hold("A@0", "h", 10))
cluster.submit(capture("A@0", "h", 10, "X@1"))
cluster.deliver(1)
settle = cluster.queues[0][0].leg
if not isinstance(settle, SettleLeg):
    raise SystemExit(f"expected the settle leg, got {settle}")
for key, _ in cluster.stores[0].items(Table.HOLDS):
    cluster.stores[0].delete(Table.HOLDS, key)
stops(settle, cluster.now, cluster.shards[0])
"""


def test_broken_invariants_stop_the_shard_under_python_o() -> None:
    completed = subprocess.run(
        [sys.executable, "-O", "-c", textwrap.dedent(_UNDER_O)],
        cwd=LEDGER.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr + completed.stdout
    assert completed.stdout.count("stopped:") == 2, completed.stdout
    assert "retention entry" in completed.stdout and "hold A@0|h of capture" in completed.stdout, completed.stdout
