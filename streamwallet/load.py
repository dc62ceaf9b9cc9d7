"""`streamwallet load <file>`: many commands from a CSV or JSON Lines file, each awaited.

CSV (`.csv`): a header line naming the columns, then one command per line. Without a
`type` column every line is a Transfer: `from_account_id,to_account_id,amount,currency`
(amount a decimal in the currency, or `amount_minor` in minor units), optionally
`dedup_id`, `command_id`. With a `type` column each line may be any command type whose
fields are plain values (metadata and batch legs need JSON Lines). A quoted field may
not span lines.

JSON Lines (`.jsonl`, `.ndjson`): one JSON object per line, as the HTTP gateway takes it
(`{"type": "Deposit", "account_id": ..., "amount": "12.34", "currency": "USD"}`); `type`
defaults to Transfer.

Idempotent re-runs: a line without a dedup id gets one derived from the file's name and
the line number (`transfers.csv:17`), so loading the same file again applies nothing
twice: lines already applied are answered from the ledger's dedup memory (counted as
"repeats" in the summary) and only the others take effect. This holds within the ledger's
idempotency window (STREAMWALLET_RETENTION_MS, 24 h by default). The file's name is its
identity: give different files different names (or `--dedup-prefix`, or a dedup_id
column), or a line of a second `transfers.csv` is taken for the first one's.

Up to `--window` commands are in flight at once; each gets `--timeout-s` for its result.
Every line ends with one outcome: ACCEPTED, a rejection code of the ledger (e.g.
INSUFFICIENT_FUNDS), INVALID_LINE (it could not be read, is not a command, or breaks a
rule the ledger checks on sight, such as a negative amount: the line number, the rule's
code and the reason are printed, nothing of it is sent, the rest of the file goes on), NOT_SENT (Kafka refused
it) or TIMED_OUT (no result in time: its outcome is unknown; a re-run settles it).
`--results out.jsonl` writes each line's outcome, in line order, for auditing. Ctrl-C
stops reading, waits for the commands in flight and prints the summary.

Exit codes: 0 every line accepted, 2 the file cannot be loaded at all (missing, unknown
format, a header that names unknown columns) or Kafka cannot be reached (nothing sent),
3 some lines were not accepted (see the summary and the per-line messages).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import hashlib
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from confluent_kafka import KafkaException

from codec import Codec
from foundation.settings import Settings
from gateway.client import LedgerClient, PendingLimitError
from gateway.translate import result_json
from ledger.commands import Command, QueryCommand
from ledger.events import CommandResult, ResultStatus
from ledger.limits import DEDUP_ID_LENGTH_MAX
from ledger.principals import Principal
from streamwallet.command_input import (
    InputError,
    body_from_cells,
    column_names,
    command_fields,
    command_from_body,
    command_types,
    currencies_of,
    operator_principal,
)
from streamwallet.exit_codes import CommandError, ExitCode
from streamwallet.kafka_access import require_topics
from streamwallet.load_progress import Progress
from streamwallet.output import print_json

LINE_BYTES_MAX = 64 * 1024  # a longer line is reported and skipped, never read whole
LINE_MESSAGES_MAX = 100  # per-line messages printed; the rest are counted (and in --results)
READ_CHUNK_BYTES = 64 * 1024
DEFAULT_TYPE = "Transfer"
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
INVALID_LINE, NOT_SENT, TIMED_OUT, ACCEPTED = "INVALID_LINE", "NOT_SENT", "TIMED_OUT", "ACCEPTED"
_DEDUP_UNSAFE = re.compile(r"[^!-{}~]")  # printable ASCII but space and '|' (ledger/commands.is_identifier)
DEDUP_HASH_CHARACTERS = 8


@dataclasses.dataclass(frozen=True, slots=True)
class CommandLine:
    number: int
    command: Command
    body: dict[str, Any]  # what the line said, as JSON (currencies for the result's amounts)


@dataclasses.dataclass(frozen=True, slots=True)
class InvalidLine:
    number: int
    error: str
    code: str | None = None  # the rule it breaks, where it has a code (INVALID_AMOUNT, SAME_ACCOUNT, ...)


ParsedLine = CommandLine | InvalidLine


@dataclasses.dataclass(frozen=True, slots=True)
class _Awaited:
    line: CommandLine
    future: concurrent.futures.Future[CommandResult]
    deadline_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Known:
    """A line whose outcome is known without waiting (invalid, not sent)."""

    number: int
    command: Command | None
    outcome: dict[str, Any]


@dataclasses.dataclass(slots=True)
class Summary:
    lines: int = 0
    outcomes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    repeats: int = 0  # accepted lines answered from the dedup memory (applied by an earlier run)
    interrupted_at_line: int | None = None

    @property
    def not_accepted(self) -> int:
        return self.lines - self.outcomes[ACCEPTED]

    @property
    def all_accepted(self) -> bool:
        return set(self.outcomes) <= {ACCEPTED} and self.interrupted_at_line is None


def file_format(path: Path, requested: str | None) -> str:
    if requested is not None:
        return requested
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise CommandError(f"{path}: cannot tell the format from the name; pass --format csv or --format jsonl")
    return found


def derived_dedup_prefix(path: Path) -> str:
    """The file's name as a dedup id prefix; a short hash of the name is appended when it had
    to be changed (characters a dedup id cannot hold, or too long) so that names stay apart."""
    name = path.name
    safe = _DEDUP_UNSAFE.sub("_", name)[: DEDUP_ID_LENGTH_MAX - 32]
    if safe != name:
        safe += "~" + hashlib.sha256(name.encode()).hexdigest()[:DEDUP_HASH_CHARACTERS]
    return safe


def physical_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, its bytes without the line end) — or None for a line longer than
    LINE_BYTES_MAX, which is skipped without being held in memory."""
    number = 0
    while True:
        raw = stream.readline(LINE_BYTES_MAX + 1)
        if not raw:
            return
        number += 1
        if len(raw) > LINE_BYTES_MAX and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(READ_CHUNK_BYTES)
            yield number, None
            continue
        yield number, raw.rstrip(b"\r\n")


class LineReader:
    """Turns a file's lines into commands, one ParsedLine per non-blank line."""

    def __init__(self, *, path: Path, file_type: str, dedup_prefix: str, codec: Codec, principal: Principal) -> None:
        self.path = path
        self.file_type = file_type
        self.dedup_prefix = dedup_prefix
        self.codec = codec
        self.principal = principal
        self.header: list[str] | None = None

    def parse(self, stream: IO[bytes]) -> Iterator[ParsedLine]:
        for number, raw in physical_lines(stream):
            if raw is None:
                yield InvalidLine(number, f"longer than {LINE_BYTES_MAX} bytes; skipped")
                continue
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                yield InvalidLine(number, f"not UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1})")
                continue
            if not text.strip():
                continue
            if self.file_type == "csv" and self.header is None:
                self.header = self._header(number, text)
                continue
            yield self._command(number, text, self.header)

    def _header(self, number: int, text: str) -> list[str]:
        try:
            columns = [column.strip() for column in next(csv.reader([text], strict=True))]
        except csv.Error as error:
            raise CommandError(f"{self.path}:{number}: the header is not valid CSV ({error}); nothing sent") from None
        duplicated = sorted({column for column in columns if columns.count(column) > 1})
        if duplicated:
            raise CommandError(f"{self.path}:{number}: columns named twice: {', '.join(duplicated)}; nothing was sent")
        if "type" in columns:
            allowed = set().union(*(column_names(name) for name in command_types())) | {"dedup_id"}
            unknown = sorted(set(columns) - allowed)
        else:
            allowed = column_names(DEFAULT_TYPE)
            unknown = sorted(set(columns) - allowed)
            missing = [
                field.name
                for field in command_fields(DEFAULT_TYPE)
                if field.required
                and field.name != "dedup_id"
                and field.name not in columns
                and f"{field.name}_minor" not in columns
            ]
            if missing and not unknown:
                raise CommandError(
                    f"{self.path}:{number}: the header lacks {', '.join(missing)} (a {DEFAULT_TYPE} needs "
                    f"{', '.join(sorted(allowed))}; add a type column for other commands); nothing was sent"
                )
        if unknown:
            raise CommandError(
                f"{self.path}:{number}: unknown column(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))}); "
                "nothing was sent"
            )
        return columns

    def _command(self, number: int, text: str, header: list[str] | None) -> ParsedLine:
        """A CSV line (with its header) or a JSON line (header None) as a command."""
        try:
            body = self._json_body(text) if header is None else self._csv_body(text, header)
            if not body.get("dedup_id") and body.get("type") != QueryCommand.__name__:
                body["dedup_id"] = f"{self.dedup_prefix}:{number}"
            return CommandLine(number, command_from_body(body, self.codec, principal=self.principal), body)
        except InputError as error:
            return InvalidLine(number, str(error), error.code)
        except (csv.Error, ValueError, RecursionError) as error:
            return InvalidLine(number, str(error))

    @staticmethod
    def _csv_body(text: str, header: list[str]) -> dict[str, Any]:
        cells = next(csv.reader([text], strict=True))
        if len(cells) != len(header):
            raise InputError(f"{len(cells)} fields; the header has {len(header)}")
        row = dict(zip(header, cells, strict=True))
        type_name = row.pop("type", "") or DEFAULT_TYPE
        return body_from_cells(type_name, row)

    @staticmethod
    def _json_body(text: str) -> dict[str, Any]:
        try:
            body = json.loads(text)
        except ValueError as error:
            raise InputError(f"not valid JSON: {error}") from None
        except RecursionError:
            raise InputError("not valid JSON: nested too deeply") from None
        if not isinstance(body, dict):
            raise InputError("a line must be a JSON object")
        body.setdefault("type", DEFAULT_TYPE)
        return body


class Loader:
    """Sends parsed lines with a bounded window, collects one outcome per line in order."""

    def __init__(
        self,
        client: LedgerClient,
        *,
        window: int,
        timeout_s: float,
        results: IO[str] | None,
        progress: Progress,
        label: str,
    ) -> None:
        self.client = client
        self.window = window
        self.timeout_s = timeout_s
        self.results = results
        self.progress = progress
        self.label = label
        self.summary = Summary()
        self._in_flight: collections.deque[_Awaited | _Known] = collections.deque()
        self._command_ids: set[str] = set()
        self._messages = 0
        self._last_sent = 0  # the number of the last line in flight or done

    def run(self, lines: Iterator[ParsedLine]) -> Summary:
        # Ctrl-C is a flag looked at between lines, not a KeyboardInterrupt raised wherever the
        # loader is: one raised between taking a line off the queue and writing its outcome lost
        # that line while the lines after it were recorded (tests/unit/test_load_interrupt.py).
        with _ctrl_c_as_flag() as interrupted:
            for line in lines:
                if interrupted.is_set():
                    self.summary.interrupted_at_line = self._next_line()
                    self.progress.message(
                        f"interrupted: no line after {self.summary.interrupted_at_line - 1} was sent; waiting for "
                        f"the {len(self._in_flight)} in flight"
                    )
                    break
                self._send(line)
                self.progress.update(lines=self.summary.lines, not_accepted=self.summary.not_accepted)
            while self._in_flight:
                self._settle_oldest()
        self.progress.finish(lines=self.summary.lines, not_accepted=self.summary.not_accepted)
        return self.summary

    def _next_line(self) -> int:
        return self._last_sent + 1

    def _send(self, line: ParsedLine) -> None:
        if isinstance(line, InvalidLine):
            outcome = {"outcome": INVALID_LINE, "code": line.code, "message": line.error}
            self._queue(_Known(line.number, None, outcome))
            return
        command = line.command
        while self._in_flight and (len(self._in_flight) >= self.window or command.command_id in self._command_ids):
            self._settle_oldest()
        try:
            future = self.client.submit(command)
        except (KafkaException, BufferError, PendingLimitError) as error:
            self.client.forget(command.command_id)
            reason = error.args[0].str() if isinstance(error, KafkaException) else str(error)
            self._queue(_Known(line.number, command, {"outcome": NOT_SENT, "message": f"not produced: {reason}"}))
            return
        self._command_ids.add(command.command_id)
        self._in_flight.append(_Awaited(line, future, time.monotonic() + self.timeout_s))
        self._last_sent = line.number

    def _queue(self, known: _Known) -> None:
        self._in_flight.append(known)
        self._last_sent = known.number
        if len(self._in_flight) > self.window:
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        """Wait for the oldest line's outcome and record it."""
        entry = self._in_flight[0]
        if isinstance(entry, _Known):
            number, command, outcome = entry.number, entry.command, entry.outcome
        else:
            number, command, outcome = entry.line.number, entry.line.command, self._wait(entry)
            self._command_ids.discard(command.command_id)
        self._in_flight.popleft()
        self._record(number, command, outcome)

    def _wait(self, entry: _Awaited) -> dict[str, Any]:
        try:
            result = entry.future.result(max(0.0, entry.deadline_s - time.monotonic()))
        except concurrent.futures.TimeoutError:
            self.client.forget(entry.line.command.command_id)
            return {
                "outcome": TIMED_OUT,
                "message": f"no result within {self.timeout_s:g}s; its outcome is unknown (a re-run settles it)",
            }
        answer = result_json(result, currencies_of(entry.line.command, entry.line.body))
        code = ACCEPTED if result.status is ResultStatus.ACCEPTED else answer["code"]
        return {"outcome": code, **answer}

    def _record(self, number: int, command: Command | None, outcome: dict[str, Any]) -> None:
        summary = self.summary
        summary.lines += 1
        code = outcome["outcome"]
        summary.outcomes[code] += 1
        if code == ACCEPTED and outcome.get("replayed"):
            summary.repeats += 1
        if code != ACCEPTED:
            self._message(number, f"{code}: {outcome.get('message') or ''}".rstrip(": "))
        if self.results is not None:
            record = {"line": number, **outcome}
            if command is not None:
                record.setdefault("command_id", command.command_id)
                record.setdefault("dedup_id", getattr(command, "dedup_id", None))
            self.results.write(json.dumps(record, ensure_ascii=False) + "\n")

    def _message(self, number: int, text: str) -> None:
        self._messages += 1
        if self._messages <= LINE_MESSAGES_MAX:
            self.progress.message(f"{self.label}:{number}: {text}")
        elif self._messages == LINE_MESSAGES_MAX + 1:
            self.progress.message(f"{self.label}: more lines were not accepted; only counted from here on")


@contextlib.contextmanager
def _ctrl_c_as_flag() -> Iterator[threading.Event]:
    """While inside, SIGINT sets the flag it yields (the previous handler is put back after).
    Off the main thread, where Python takes no signal handler, the flag is never set."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, lambda _signal, _frame: interrupted.set())
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def load_file(
    settings: Settings,
    path: Path,
    *,
    file_type: str | None,
    dedup_prefix: str | None,
    window: int,
    timeout_s: float,
    results_path: Path | None,
    as_json: bool,
) -> int:
    kind = file_format(path, file_type)
    try:
        stream = path.open("rb")
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    codec = Codec()
    reader = LineReader(
        path=path,
        file_type=kind,
        dedup_prefix=dedup_prefix or derived_dedup_prefix(path),
        codec=codec,
        principal=operator_principal(settings),
    )
    with stream:
        lines = reader.parse(stream)
        first = next(lines, None)  # the header's errors stop the load before anything is sent
        topology = settings.topology()
        require_topics(settings, topology.commands, topology.results)
        client = LedgerClient(settings, codec=codec, pending_max=window)
        progress = Progress(stream=sys.stderr, total_bytes=path.stat().st_size, position=stream.tell)
        started = time.monotonic()
        try:
            with _results_file(results_path) as results:
                loader = Loader(
                    client, window=window, timeout_s=timeout_s, results=results, progress=progress, label=str(path)
                )
                summary = loader.run(_chain(first, lines))
        finally:
            client.close()
    _print_summary(path, summary, time.monotonic() - started, as_json=as_json)
    return ExitCode.OK if summary.all_accepted else ExitCode.PARTIAL


def _chain(first: ParsedLine | None, rest: Iterator[ParsedLine]) -> Iterator[ParsedLine]:
    if first is not None:
        yield first
        yield from rest


@contextlib.contextmanager
def _results_file(path: Path | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    try:
        stream = path.open("w", encoding="utf-8")
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror}") from None
    with stream:
        yield stream


def _print_summary(path: Path, summary: Summary, seconds: float, *, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "file": str(path),
                "lines": summary.lines,
                "outcomes": dict(sorted(summary.outcomes.items())),
                "repeats": summary.repeats,
                "interrupted_at_line": summary.interrupted_at_line,
                "seconds": round(seconds, 3),
            }
        )
        return
    rate = summary.lines / seconds if seconds > 0 else 0.0
    print(f"{path}: {summary.lines} lines in {seconds:.1f}s ({rate:,.0f}/s)")
    for code, count in sorted(summary.outcomes.items(), key=lambda item: (item[0] != ACCEPTED, item[0])):
        repeats = summary.repeats if code == ACCEPTED else 0
        note = f"  ({repeats} repeats: applied by an earlier run)" if repeats else ""
        print(f"  {code:<24} {count:>9}{note}")
    if summary.interrupted_at_line is not None:
        print(f"  interrupted before line {summary.interrupted_at_line}: load the same file again to finish it")
