"""The ports the test deployments give their processes (tests/conftest.py `free_port`).

A process the tests kill -9 and restart binds its port again; were that port in Linux's
ephemeral range, any client socket opened meanwhile could hold it as its local port and
the restarted worker died with "address already in use" (seen under load in
test_cross_partition). So the ports come from below that range."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.conftest import free_port


def ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_a_test_port_is_below_the_ephemeral_range_and_free() -> None:
    ports = [free_port() for _ in range(50)]
    assert all(port < ephemeral_low() for port in ports), ports
    assert len(set(ports)) == len(ports), "a port handed out twice in one session"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
