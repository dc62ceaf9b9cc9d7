"""A pytest plugin for tests/unit/test_suite_parts.py (`-p tests.suite_probe`): once
collection and `-m`'s selection are done, it writes the selected tests that ask for a shared
server (tests/conftest.py `shared_server_markers`), one node id a line, to the file named by
SUITE_PROBE_OUT."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import shared_server_markers


def pytest_collection_finish(session: pytest.Session) -> None:
    asking = [item.nodeid for item in session.items if shared_server_markers(item)]
    Path(os.environ["SUITE_PROBE_OUT"]).write_text("".join(f"{nodeid}\n" for nodeid in asking))
