"""One embedded ClickHouse (chDB) store for the whole test session, one database per test.

chDB allows one data folder per process, for the life of the process (opening a second
folder fails with "EmbeddedServer already initialized"): so this pytest process opens
exactly one folder, here, once per session, and each test gets a database of its own in
it (created and migrated, dropped afterwards), which isolates tests as well as separate
folders would. Integration tests never open chDB in the pytest process: they run the
query service (and anything else touching a store) as separate processes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sinks.clickhouse import connect
from sinks.schema import migrate


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder: Path = tmp_path_factory.mktemp("chdb")
    return f"chdb://{folder}"


@pytest.fixture(scope="session")
def clickhouse(clickhouse_dsn: str) -> Any:
    return connect(clickhouse_dsn)


@pytest.fixture
def database(clickhouse: Any) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    migrate(clickhouse, name)
    yield name
    clickhouse.command(f"DROP DATABASE IF EXISTS {name} SYNC")
