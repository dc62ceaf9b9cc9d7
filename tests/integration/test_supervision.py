"""The local stack supervises its processes as an orchestrator would: a process that dies
unasked is started again (with back-off, logged), and the stack keeps serving."""

from __future__ import annotations

import time
from typing import Any

import pytest

from foundation.http import request_json
from foundation.settings import Settings
from streamwallet.stack import Stack
from tests.credentials import Credentials

pytestmark = pytest.mark.kafka


def test_a_killed_worker_and_gateway_are_restarted_and_serve_again(settings: Settings, tmp_path: Any) -> None:
    stack = Stack(settings, tmp_path)
    worker, gateway = stack.worker(1).start(), stack.gateway().start()
    try:
        worker.wait_ready()
        gateway.wait_ready()
        stack.supervise()
        worker.kill(restart=True)
        gateway.kill(restart=True)
        deadline = time.monotonic() + 60
        while (worker.restarts, gateway.restarts) < (1, 1) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (worker.restarts, gateway.restarts) == (1, 1)
        assert worker.exits == [-9] and gateway.exits == [-9]
        worker.wait_ready()
        gateway.wait_ready()
        status, body = request_json(
            "POST",
            f"{settings.gateway_url}/v1/commands",
            body={"type": "OpenAccount", "dedup_id": "o", "account_id": "after-restart", "currency": "USD"},
            headers=Credentials(settings).headers("supervision"),
        )
        assert status == 200 and body["status"] == "ACCEPTED", body
        # Stopped on purpose: not restarted.
        worker.stop()
        time.sleep(2)
        assert not worker.alive and worker.restarts == 1
    finally:
        stack.stop_all()
