"""A worker's state directory is its own: a second process opening it (two workers started with
one worker id on one machine, or one data directory shared by mistake) is refused with a message
that says so, before it touches Kafka. Before, it stopped on RocksDB's own "IO error: While lock
file: .../LOCK: Resource temporarily unavailable" and a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codec import Codec
from streams.store import LocalState, StateDirectoryInUse

PROJECT_ROOT = Path(__file__).resolve().parents[3]
HOLD = """
import sys
from pathlib import Path
from codec import Codec
from streams.store import LocalState
state = LocalState(Path(sys.argv[1]), Codec(), cache_entries=1000)
print("open", flush=True)
sys.stdin.read()
state.close()
"""


def test_a_second_process_on_the_same_state_directory_is_refused_saying_why(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StateDirectoryInUse, match="is in use by another process") as refused:
            LocalState(tmp_path, Codec(), cache_entries=1000)
        assert str(tmp_path) in str(refused.value)
        assert "STREAMWALLET_DATA_DIR" in str(refused.value)
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(30)
    LocalState(tmp_path, Codec(), cache_entries=1000).close()  # free again once the first has closed it
