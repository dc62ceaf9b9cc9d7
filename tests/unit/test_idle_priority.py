"""`deploy/idle.sh`, which `./sw test` runs the Go-tool builds under while the tests run: the
command must get only the CPU the rest leaves idle. With the kernel's autogroup scheduling
(on by default on Debian), a process's nice value weighs it only against the processes of
its own session; a niced build in a session of its own still took half the CPU from the
tests. So the session's CPU group must be niced too."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

IDLE = Path(__file__).resolve().parents[2] / "deploy" / "idle.sh"
AUTOGROUP = Path("/proc/self/autogroup")


def started(*command: str) -> subprocess.Popen[bytes]:
    """`command` under idle.sh, once it has replaced idle.sh (exec) in its process."""
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{process.pid}/comm").read_text().strip() != "sleep":
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{command} never became `sleep` (exit {process.poll()})")
        time.sleep(0.01)
    return process


def nice_of(pid: int) -> int:
    # /proc/<pid>/stat: the command (field 2) is in parentheses and may hold spaces.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not AUTOGROUP.exists(), reason="this kernel has no autogroup scheduling")
def test_a_command_run_idle_in_a_session_of_its_own_has_that_sessions_cpu_group_niced() -> None:
    process = started("setsid", str(IDLE), "sleep", "30")
    try:
        assert nice_of(process.pid) == 19
        ionice = subprocess.run(["ionice", "-p", str(process.pid)], capture_output=True, text=True, check=True)
        assert ionice.stdout.strip() == "idle"
        assert Path(f"/proc/{process.pid}/autogroup").read_text().split()[-2:] == ["nice", "19"]
    finally:
        process.kill()
        process.wait()


def test_outside_a_session_of_its_own_it_refuses_and_leaves_the_callers_group_alone() -> None:
    before = AUTOGROUP.read_text() if AUTOGROUP.exists() else ""
    finished = subprocess.run([str(IDLE), "sleep", "0"], check=False, capture_output=True, text=True)
    assert finished.returncode == 2
    assert "setsid" in finished.stderr
    assert (AUTOGROUP.read_text() if AUTOGROUP.exists() else "") == before
