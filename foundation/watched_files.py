"""A file's parsed content, read again when the file changes: a key revoked with the CLI,
or a JWKS document replaced when the identity provider rotates its keys, takes effect on
the next request, with no restart. The change is seen by the file's identity, size and
modification time (one stat per use). A file that fails to parse after a change keeps
the last good content, with a warning that names the file (never its content); at start
a failure is an error, so a gateway never runs with credentials it cannot read."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
Signature = tuple[int, int, int] | None  # (inode, size, mtime ns), None: no file


def signature(path: Path) -> Signature:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


class WatchedFile(Generic[T]):
    def __init__(self, path: Path, parse: Callable[[Path], T]) -> None:
        self.path = path
        self.parse = parse
        self._signature = signature(path)
        self._value = parse(path)

    def current(self) -> T:
        now = signature(self.path)
        if now != self._signature:
            self._signature = now
            try:
                self._value = self.parse(self.path)
            except Exception as error:  # noqa: BLE001 - any failure keeps the last good content
                log.warning("%s changed but cannot be used (%s); keeping what it held before", self.path, error)
        return self._value
