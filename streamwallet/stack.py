"""Start and stop streamwallet's processes: workers, the query service, the gateway.

Each runs as its own OS process (`python -m streamwallet.cli <role>`), configured only
through STREAMWALLET_* environment variables, logging to `<run dir>/logs/<name>.log`.
`streamwallet up` and the integration tests use the same code.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from foundation.settings import Settings

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


@dataclasses.dataclass
class ManagedProcess:
    name: str
    role: str
    settings: Settings
    log_path: Path
    ready_url: str
    process: subprocess.Popen[bytes] | None = None
    module: str = "streamwallet.cli"  # run as `python -m <module> <role>`

    def start(self) -> ManagedProcess:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **self.settings.environment(), "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, self.role],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log_path}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout_s}s; see {self.log_path}:\n{self.tail()}")

    def kill(self) -> None:
        """kill -9: no goodbye, no flush, no leaving the group."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def tail(self, characters: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except FileNotFoundError:
            return ""


class Stack:
    """The processes of one streamwallet deployment on this machine. `role_overrides` gives
    a role ("worker", "query", "gateway") settings of its own, e.g. its Kafka user."""

    def __init__(
        self, settings: Settings, run_dir: Path, *, role_overrides: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.role_overrides = role_overrides or {}
        self.processes: list[ManagedProcess] = []

    def worker(self, index: int, *, module: str = "streamwallet.cli") -> ManagedProcess:
        """Worker `index` (its id and web port follow from it); another module may stand
        in for the ledger worker (the benchmarks' pass-through baseline)."""
        settings = dataclasses.replace(
            self.settings,
            worker_id=f"worker-{index}",
            worker_web_port=self.settings.worker_web_port + index,
        )
        return self._add(
            f"worker-{index}",
            "worker",
            settings,
            f"http://{settings.worker_web_host}:{settings.worker_web_port}/ready",
            module=module,
        )

    def query(self) -> ManagedProcess:
        return self._add("query", "query", self.settings, f"{self.settings.query_url}/ready")

    def gateway(self) -> ManagedProcess:
        return self._add("gateway", "gateway", self.settings, f"{self.settings.gateway_url}/ready")

    def _add(
        self, name: str, role: str, settings: Settings, ready_url: str, *, module: str = "streamwallet.cli"
    ) -> ManagedProcess:
        process = ManagedProcess(
            name=name,
            role=role,
            settings=dataclasses.replace(settings, **self.role_overrides.get(role, {})),
            log_path=self.run_dir / "logs" / f"{name}.log",
            ready_url=ready_url,
            module=module,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
