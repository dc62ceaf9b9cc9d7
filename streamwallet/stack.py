"""Start, stop and supervise streamwallet's processes: workers, the query service, the gateway.

Each runs as its own OS process (`python -m streamwallet.cli <role>`), configured only
through STREAMWALLET_* environment variables, logging to `<run dir>/logs/<name>.log`.
`streamwallet up` and the integration tests use the same code.

`Stack.supervise()` does what an orchestrator does for the local stack: a process that
exits without being asked to is started again, after a back-off that doubles from
`RESTART_BACKOFF_S_MIN` to `RESTART_BACKOFF_S_MAX` and resets once the process has
stayed up for `RESTART_RESET_AFTER_S`; every restart is logged with its exit status. A
worker exits on purpose when it is fenced or cannot know whether its last commit landed
(streams/transactions.py): restarting it is the recovery.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from foundation.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
RESTART_BACKOFF_S_MIN = 1.0
RESTART_BACKOFF_S_MAX = 30.0
RESTART_RESET_AFTER_S = 60.0
SUPERVISE_INTERVAL_S = 0.5


@dataclasses.dataclass
class ManagedProcess:
    name: str
    role: str
    settings: Settings
    log_path: Path
    ready_url: str
    process: subprocess.Popen[bytes] | None = None
    module: str = "streamwallet.cli"  # run as `python -m <module> <role>`
    restarts: int = 0  # by the supervisor
    exits: list[int] = dataclasses.field(default_factory=list)  # statuses of exits nobody asked for
    paused: bool = False  # SIGSTOPped by a test: not dead, not to be restarted
    _wanted: bool = False  # started and not stopped on purpose
    _started_s: float = 0.0
    _backoff_s: float = RESTART_BACKOFF_S_MIN
    _restart_at_s: float | None = None

    def start(self) -> ManagedProcess:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.name} is running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **self.settings.environment(), "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self._wanted = True
            self._started_s = time.monotonic()
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

    def kill(self, *, restart: bool = False) -> None:
        """kill -9: no goodbye, no flush, no leaving the group. A supervised process is
        started again by its supervisor only with `restart`; otherwise the caller does."""
        if self.process is not None and self.alive:
            self._wanted = restart
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the process and every thread in it freeze (a GC pause, a VM stall, a
        network cut) without knowing it; SIGCONT wakes it where it was."""
        if self.process is not None and self.alive:
            self.paused = True
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.paused:
            self.process.send_signal(signal.SIGCONT)
            self.paused = False

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        self._wanted = False
        if self.process is None:
            return None
        self.resume()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def supervise_once(self, now_s: float) -> None:
        """Restart the process if it exited without being asked to (after its back-off)."""
        if not self._wanted or self.paused or self.process is None:
            return
        status = self.process.poll()
        if status is None:
            if now_s - self._started_s >= RESTART_RESET_AFTER_S:
                self._backoff_s = RESTART_BACKOFF_S_MIN
            return
        if self._restart_at_s is None:
            self.exits.append(status)
            self._restart_at_s = now_s + self._backoff_s
            log.warning(
                "%s exited with status %s; restarting it in %.1fs (see %s)",
                self.name,
                status,
                self._backoff_s,
                self.log_path,
            )
            self._backoff_s = min(self._backoff_s * 2, RESTART_BACKOFF_S_MAX)
            return
        if now_s >= self._restart_at_s:
            self._restart_at_s = None
            self.restarts += 1
            self.start()
            log.warning("%s restarted (restart %d)", self.name, self.restarts)

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
        self._supervising = threading.Event()
        self._supervisor: threading.Thread | None = None

    def supervise(self) -> None:
        """From now on, restart any process of this stack that exits unasked."""
        if self._supervisor is not None:
            return
        self._supervising.set()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        while self._supervising.is_set():
            now_s = time.monotonic()
            for process in list(self.processes):
                process.supervise_once(now_s)
            time.sleep(SUPERVISE_INTERVAL_S)

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
        self._supervising.clear()
        if self._supervisor is not None:
            self._supervisor.join(5)
            self._supervisor = None
        for process in reversed(self.processes):
            process.stop()
