"""A real gateway stack for the HTTP tests (a worker, the query service and the gateway as
separate processes), and a small client of its API that authenticates as a principal."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from foundation.settings import Settings
from ledger.principals import Role
from streamwallet.stack import Stack
from tests.conftest import fresh_settings
from tests.credentials import EVERY_ROLE, Credentials

NOT_YET_ATTEMPTS_MAX = 300
READ_WAIT_MS = 100  # reads with a min_seq the view never reaches (most fuzzed ones) wait this long
# Every command gets its result; on a machine shared with other test runs it can take a while.
RESULT_TIMEOUT_MS = 60_000


@dataclasses.dataclass(frozen=True)
class Api:
    settings: Settings
    stack: Stack
    authorization: dict[str, str]  # the headers that authenticate this client's requests

    @property
    def url(self) -> str:
        return self.settings.gateway_url

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.settings)

    def as_principal(self, subject: str, roles: frozenset[Role] | list[str] = EVERY_ROLE, **claims: Any) -> Api:
        """The same API, asked by `subject` with `roles` (a fresh HS256 token)."""
        return dataclasses.replace(self, authorization=self.credentials.headers(subject, roles, **claims))

    def with_headers(self, authorization: dict[str, str]) -> Api:
        return dataclasses.replace(self, authorization=authorization)

    def call(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, decoded JSON body, headers); `path` is sent exactly as given (already quoted)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **self.authorization, **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw, status, answer_headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, answer_headers = error.read(), error.code, dict(error.headers)
        return status, json.loads(raw) if raw else None, answer_headers

    def read(self, path: str) -> tuple[int, Any, dict[str, str]]:
        """A read with min_seq, asked again while the view answers NOT_YET (as a client should)."""
        for _attempt in range(NOT_YET_ATTEMPTS_MAX):
            status, body, headers = self.call("GET", path)
            if not (status == 409 and body["code"] == "NOT_YET"):
                break
            assert headers["Retry-After"] == "1"
        return status, body, headers

    def command(self, body: dict[str, Any], **keywords: Any) -> tuple[int, Any, dict[str, str]]:
        return self.call("POST", "/v1/commands", body, **keywords)


@contextlib.contextmanager
def gateway_stack(kafka_bootstrap: str, run_dir: Path, **overrides: Any) -> Iterator[Api]:
    """A worker, the query service and the gateway of a fresh deployment, until the block
    ends; the API asked by a principal with every role."""
    settings = fresh_settings(
        kafka_bootstrap,
        run_dir,
        prefix="g",
        read_wait_ms_max=READ_WAIT_MS,
        gateway_result_timeout_ms=RESULT_TIMEOUT_MS,
        **overrides,
    )
    stack = Stack(settings, run_dir)
    processes = [stack.worker(1).start(), stack.query().start(), stack.gateway().start()]
    try:
        for process in processes:
            process.wait_ready()
        yield Api(settings, stack, {}).as_principal("tester")
    finally:
        stack.stop_all()


def quoted(account_id: str) -> str:
    return urllib.parse.quote(account_id, safe="")


def open_with_balance(api: Api, account_id: str, amount_minor: int, *, owner: str = "tester") -> int:
    """Open a USD account of `owner` (by default the principal the tests' Api acts as; "": none)
    and deposit into it; the sequence of the deposit."""
    status, opened, _ = api.command(
        {"type": "OpenAccount", "dedup_id": "open", "account_id": account_id, "currency": "USD", "owner": owner}
    )
    assert status == 200 and opened["status"] == "ACCEPTED", opened
    if amount_minor == 0:
        sequence: int = opened["positions"][0]["sequence"]
        return sequence
    status, deposited, _ = api.command(
        {
            "type": "Deposit",
            "dedup_id": "deposit",
            "account_id": account_id,
            "amount_minor": amount_minor,
            "currency": "USD",
        }
    )
    assert status == 200 and deposited["status"] == "ACCEPTED", deposited
    sequence = deposited["positions"][0]["sequence"]
    return sequence
