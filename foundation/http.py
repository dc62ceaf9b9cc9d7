"""One small JSON-over-HTTP helper for the processes that call each other (the CLI and
the demo calling the query service or the gateway, readiness probes)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def request_json(
    method: str, url: str, *, body: Any = None, timeout_s: float = 30.0, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """(status, decoded JSON body or None) of one request; an HTTP error status is an
    answer, not an exception. Connection failures raise (URLError, ConnectionError,
    TimeoutError)."""
    data = None
    all_headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    elif method == "POST":
        data = b""
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, _decoded(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _decoded(error.read())


def _decoded(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
