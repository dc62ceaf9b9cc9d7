"""One ClickHouse client API, two backends chosen by configuration.

    chdb:///<folder>       chDB in this process (the default; persistent)
    http://host:8123       a ClickHouse server (https:// too)

Only one process may open a chDB folder, and a process only one folder: the query
service owns it, and every other process reads through the service's HTTP API.

A client runs one query at a time (chDB serializes calls on a client's handle, a
server session would refuse concurrent queries), while separate clients of one process
run in parallel on the same store: the sink writes through its own client and readers
take one per thread from a `ClientPool`.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
from typing import Any
from urllib.parse import urlparse

import chdb
import clickhouse_connect

_lock = threading.Lock()


class StoreLockedError(RuntimeError):
    """Another process holds the chDB folder."""


class StoreInUseError(RuntimeError):
    """This process already opened another chDB folder."""


def connect(dsn: str, *, database: str | None = None, session: bool = False) -> Any:
    """A clickhouse-connect client for `dsn`; chDB clients of one process share its store.
    `session`: a server client keeps one session, for temporary tables (the events sink's
    incoming batch); it must then run one query at a time (a chDB client always has one)."""
    if dsn.startswith("chdb://"):
        folder = dsn.removeprefix("chdb://")
        if folder:
            os.makedirs(folder, exist_ok=True)
        with _lock:
            try:
                return _capture_stderr(lambda: clickhouse_connect.get_client(dsn=dsn))
            except Exception as error:
                raise _explain(error, folder) from error
    url = urlparse(dsn)
    return clickhouse_connect.get_client(
        host=url.hostname or "127.0.0.1",
        port=url.port or (8443 if url.scheme == "https" else 8123),
        username=url.username or "default",
        password=url.password or "",
        secure=url.scheme == "https",
        database=database or "default",
        autogenerate_session_id=session,  # a session refuses concurrent queries: only for one thread's client
    )


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages."""
    url = urlparse(dsn)
    if url.password is None:
        return dsn
    return url._replace(netloc=url.netloc.replace(f":{url.password}@", ":***@")).geturl()


def embedded_folder(dsn: str) -> str | None:
    """The chDB folder of an embedded store's DSN, spelt as chDB compares it (the real
    path); None for a ClickHouse server."""
    if not dsn.startswith("chdb://"):
        return None
    folder = dsn.removeprefix("chdb://")
    return os.path.realpath(folder) if folder else ":memory:"


def open_handle(folder: str) -> Any:
    """A raw chDB connection to the store this process has opened (see `connect`): session
    state set on it (settings, USE) stays on it alone. Close it after use."""
    with _lock:
        return chdb.connect(folder)  # type: ignore[no-untyped-call]


def _explain(error: Exception, folder: str) -> Exception:
    text = str(error)
    stderr = getattr(error, "captured_stderr", "")
    if "already initialized with path" in text:
        return StoreInUseError(
            f"this process already opened another embedded ClickHouse folder, so it cannot open {folder} "
            f"(chDB allows one folder per process). chDB said: {text.strip()[:300]}"
        )
    if "Cannot lock file" in stderr or "EmbeddedServer" in text or "Code: 36" in text:
        return StoreLockedError(
            f"the embedded ClickHouse folder {folder} is in use by another process (chDB allows one process per "
            f"folder). Stop the other query service, or point STREAMWALLET_CLICKHOUSE_DSN at a ClickHouse server. "
            f"chDB said: {text.strip()[:300]}"
        )
    return error


def _capture_stderr(create: Any) -> Any:
    """chDB prints the real cause of an open failure only on stderr: keep it for the error."""
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return create()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), stderr_fd)
        try:
            return create()
        except Exception as error:
            os.dup2(saved, stderr_fd)
            capture.seek(0)
            error.captured_stderr = capture.read().decode(errors="replace")  # type: ignore[attr-defined]
            raise
        finally:
            os.dup2(saved, stderr_fd)
            os.close(saved)


class ClientPool:
    """One client per thread, opened on first use: readers on many threads run in parallel."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._local = threading.local()

    def client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = connect(self.dsn)
            self._local.client = client
        return client
