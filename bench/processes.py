"""The processes of a benchmark run, read from /proc (Linux): CPU time (user + system),
peak resident memory, and which local process listens on a port (the broker).

CPU is the difference between two snapshots of named processes (broker, workers, the
load generator). A process that exited between them fails the measurement with
`ProcessGone` rather than counting as zero: a worker that died mid-run would otherwise
make the figures look cheaper.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
TCP_LISTEN_STATE = "0A"
ZOMBIE_STATE = "Z"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", socket.gethostname()})
KIB_PER_MIB = 1024


class ProcessGone(Exception):
    """A measured process is no longer running."""


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 3, the state, first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError) as error:
        raise ProcessGone(f"pid {pid} is not running") from error
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] == ZOMBIE_STATE:
        raise ProcessGone(f"pid {pid} has exited")
    return fields


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime (fields 14, 15)


def cpu_snapshot(processes: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds of each named process (name -> pid) now."""
    snapshot = {}
    for name, pid in processes.items():
        try:
            snapshot[name] = cpu_seconds(pid)
        except ProcessGone as gone:
            raise ProcessGone(f"{name} (pid {pid}) is gone: {gone}") from gone
    return snapshot


def cpu_used(processes: Mapping[str, int], *, since: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds each named process used since the snapshot `since`."""
    now = cpu_snapshot(processes)
    return {name: now[name] - since[name] for name in processes}


def peak_rss_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a running process, in MiB."""
    _stat_fields(pid)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / KIB_PER_MIB
    raise ProcessGone(f"pid {pid} has no memory (a kernel thread or an exiting process)")


def _listening_socket_inodes(port: int) -> set[str]:
    inodes = set()
    for table in TCP_TABLES:
        try:
            rows = table.read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local_address, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN_STATE and int(local_address.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def listening_pid(port: int) -> int | None:
    """The process (of this user) listening on a TCP port of this machine, if any."""
    targets = {f"socket:[{inode}]" for inode in _listening_socket_inodes(port)}
    if not targets:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except (PermissionError, FileNotFoundError, ProcessLookupError):  # not ours, or gone
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(descriptor) in targets:
                    return int(entry.name)
            except OSError:  # closed since it was listed (a client reconnecting): the next one
                continue
    return None


def broker_processes(bootstrap_servers: str) -> dict[str, int]:
    """The local broker processes of a bootstrap list, named "broker" (or "broker 1", "broker 2", ...);
    brokers on other machines, or of another user, are left out (their CPU is not measured)."""
    addresses = [address.strip() for address in bootstrap_servers.split(",") if address.strip()]
    found = {}
    for index, address in enumerate(addresses, start=1):
        host, _, port = address.rpartition(":")
        pid = listening_pid(int(port)) if host in LOCAL_HOSTS else None
        if pid is not None:
            found["broker" if len(addresses) == 1 else f"broker {index}"] = pid
    return found
