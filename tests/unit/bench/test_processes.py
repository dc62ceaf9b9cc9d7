"""CPU, memory and listening sockets of real processes, read from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.processes import (
    ProcessGone,
    broker_processes,
    cpu_seconds,
    cpu_snapshot,
    cpu_used,
    listening_pid,
    peak_rss_mb,
)

BUSY_S = 0.3


def busy(seconds: float) -> None:
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


def test_cpu_seconds_of_a_process_grow_with_its_work() -> None:
    before = cpu_seconds(os.getpid())
    busy(BUSY_S)
    assert cpu_seconds(os.getpid()) - before >= BUSY_S * 0.9


def test_cpu_used_is_per_named_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        processes = {"idle child": child.pid, "this": os.getpid()}
        since = cpu_snapshot(processes)
        busy(BUSY_S)
        used = cpu_used(processes, since=since)
        assert set(used) == {"idle child", "this"}
        assert used["this"] >= BUSY_S * 0.9
        assert used["idle child"] < BUSY_S / 3
    finally:
        child.communicate(b"")


def test_a_process_gone_in_the_middle_of_a_measurement_fails_it() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    processes = {"worker 1": child.pid}
    since = cpu_snapshot(processes)
    child.communicate(b"")  # exits and is reaped
    with pytest.raises(ProcessGone, match=r"worker 1 \(pid \d+\)"):
        cpu_used(processes, since=since)
    with pytest.raises(ProcessGone):
        peak_rss_mb(child.pid)


def test_a_dead_but_unreaped_process_is_gone_too() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    try:
        with pytest.raises(ProcessGone):
            cpu_seconds(child.pid)
    finally:
        child.wait()


def test_peak_rss_of_this_process() -> None:
    assert peak_rss_mb(os.getpid()) > 1.0


def test_the_process_listening_on_a_port_is_found() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert listening_pid(port) == os.getpid()
        assert broker_processes(f"127.0.0.1:{port}") == {"broker": os.getpid()}
        assert broker_processes(f"localhost:{port},127.0.0.1:{port}") == {
            "broker 1": os.getpid(),
            "broker 2": os.getpid(),
        }
    assert listening_pid(port) is None
    assert broker_processes("kafka.example.com:9092") == {}


def test_a_listening_process_is_found_while_its_other_descriptors_come_and_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A descriptor closed between listing a process's descriptors and reading one (a client's
    thread reconnecting, say) skips that descriptor, not the whole process: it skipped the
    process, and the CI of stop 34 found no process listening on this test's own port. Here
    this process's first descriptor read vanishes so."""
    real_readlink = os.readlink
    vanished: list[str] = []

    def readlink(path: Path) -> str:
        if str(path).startswith(f"/proc/{os.getpid()}/fd/") and not vanished:
            vanished.append(str(path))
            raise FileNotFoundError(path)
        return real_readlink(path)

    monkeypatch.setattr(os, "readlink", readlink)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert listening_pid(listener.getsockname()[1]) == os.getpid()
    assert vanished
