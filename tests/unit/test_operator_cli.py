"""The operator's CLI without a running system: its help, its exit code when nothing can be
reached, files refused before anything is sent, and how a load reads lines and derives
dedup ids. The command line's own entry (`streamwallet.cli.main`) runs in this process,
with the environment a user would set; the cases that read librdkafka's lines and two
others run it as a subprocess, as a user does (tests/integration/test_operator_cli.py does
so throughout)."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.commands import is_identifier
from ledger.limits import DEDUP_ID_LENGTH_MAX
from streamwallet.cli import main
from streamwallet.load import LINE_BYTES_MAX, derived_dedup_prefix, physical_lines

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1
DEPOSIT = '{"type": "Deposit", "dedup_id": "d", "account_id": "a", "amount": "1.00", "currency": "USD"}'


ENVIRONMENT = {"STREAMWALLET_BOOTSTRAP_SERVERS": UNREACHABLE, "STREAMWALLET_QUERY_URL": "http://127.0.0.1:1"}


@dataclasses.dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Callable[..., Done]:
    """`streamwallet ARGS...` in this process; stdout and stderr captured at the file
    descriptors (librdkafka writes to them directly)."""
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> Done:
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse: --help and usage errors
            code = int(exit_.code or 0)
        captured = capfd.readouterr()
        return Done(code, captured.out, captured.err)

    return run


def subprocess_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamwallet.cli", *args],
        env={**os.environ, **ENVIRONMENT},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), ["Exit codes", "0  done", "3  partly done", "4  no answer in time", "deadletter redrive"]),
        (("account", "show"), ["Open holds come from the command side", "--min-seq", "--no-holds", "--json"]),
        (("submit",), ["dedup id", "--body", "Command types", "ReverseTransfer", "4 no result"]),
        (("submit", "CaptureHold"), ["--hold-id", "--amount-minor", "--currency", "--to-account-id"]),
        (("load",), ["transfers.csv:17", "idempotency window", "INVALID_LINE", "--results", "3 some lines"]),
        (("tail",), ["read_committed", "--from-beginning", "--account", "Ctrl-C"]),
        (("deadletter", "redrive"), ["--include-legs", "InvariantViolation", "same Kafka transaction", "--dry-run"]),
    ],
)
def test_every_operator_command_explains_itself(
    cli: Callable[..., Done], args: tuple[str, ...], says: list[str]
) -> None:
    done = cli(*args, "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps lines
    missing = [phrase for phrase in says if " ".join(phrase.split()) not in text]
    assert not missing, done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("tail", "events", "--no-follow"),
        ("deadletter", "redrive", "--dry-run"),
        ("account", "show", "alice"),
    ],
)
def test_an_unreachable_system_is_exit_2_with_a_clear_message_and_no_librdkafka_lines(args: tuple[str, ...]) -> None:
    # A process of its own: librdkafka writes to file descriptor 2, so in this process the
    # lines of any client another test left alive would be read as this command's.
    done = subprocess_cli(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "cannot reach" in done.stderr
    assert "Traceback" not in done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith("%")], done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("submit", "Deposit", "--dedup-id", "d", "--account-id", "a", "--amount", "1.005", "--currency", "USD"),
            "USD has 2 decimal places",
        ),
        (
            ("submit", "Deposit", "--dedup-id", "d", "--account-id", "a", "--amount", "1", "--currency", "XYZ"),
            "valid currency",
        ),
        (("submit", "--body", DEPOSIT.replace('"1.00"', "1.5")), "decimal string"),
        (("submit", "--body", DEPOSIT.replace('"1.00"', '"-1.00"')), "INVALID_AMOUNT: amount must be"),
        (("submit", "--body", "[[[["), "not valid JSON"),
        (("submit", "--body", '{"type": "Steal"}'), "type must be one of"),
        (("submit", "Batch", "--dedup-id", "d", "--batch-id", "b", "--leg", "alice-5USD"), "ACCOUNT:AMOUNT:CURRENCY"),
        (("deadletter", "redrive", "--reason", "BORED"), "unknown reason BORED"),
    ],
)
def test_input_that_is_not_a_command_is_exit_2_before_anything_is_sent(
    cli: Callable[..., Done], args: tuple[str, ...], says: str
) -> None:
    done = cli(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert says in done.stderr
    assert "cannot reach" not in done.stderr  # refused before Kafka was even asked


def test_as_a_subprocess_submit_reads_stdin_and_an_unreachable_broker_is_exit_2() -> None:
    done = subprocess_cli("submit", "--body", "-", stdin=DEPOSIT.replace('"1.00"', '"1.001"'))
    assert done.returncode == 2 and "USD has 2 decimal places" in done.stderr, done.stderr
    done = subprocess_cli("submit", "--body", "-", stdin=DEPOSIT)
    assert done.returncode == 2 and "cannot reach Kafka at 127.0.0.1:1" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "%3|" not in done.stderr


def test_a_file_that_cannot_be_loaded_at_all_is_exit_2_and_nothing_is_sent(
    cli: Callable[..., Done], tmp_path: Path
) -> None:
    unknown_column = tmp_path / "typo.csv"
    unknown_column.write_text("from_account_id,to_account_id,ammount,currency\na,b,1.00,USD\n")
    missing_column = tmp_path / "short.csv"
    missing_column.write_text("from_account_id,amount,currency\na,1.00,USD\n")
    unknown_format = tmp_path / "transfers.xlsx"
    unknown_format.write_bytes(b"PK\x03\x04")
    for path, says in [
        (unknown_column, "unknown column(s) ammount"),
        (missing_column, "lacks to_account_id"),
        (unknown_format, "--format csv"),
        (tmp_path / "absent.csv", "cannot read"),
    ]:
        done = cli("load", str(path))
        assert done.returncode == 2, (path, done.stderr)
        assert says in done.stderr and "cannot reach" not in done.stderr, done.stderr


def test_derived_dedup_ids_are_valid_identifiers_and_tell_file_names_apart() -> None:
    plain = derived_dedup_prefix(Path("/data/2026-11-28/transfers.csv"))
    assert plain == "transfers.csv"
    spaced, underscored = derived_dedup_prefix(Path("a b.csv")), derived_dedup_prefix(Path("a_b.csv"))
    assert spaced != underscored and spaced.startswith("a_b.csv~")
    long_name = derived_dedup_prefix(Path("x" * 300 + ".csv"))
    for prefix in (plain, spaced, underscored, long_name, derived_dedup_prefix(Path("überweisung|1.csv"))):
        dedup_id = f"{prefix}:{10**9}"
        assert is_identifier(dedup_id, DEDUP_ID_LENGTH_MAX), dedup_id


def test_lines_are_numbered_and_a_huge_line_is_skipped_without_being_read_whole() -> None:
    data = b"first\r\n" + b"x" * (3 * LINE_BYTES_MAX) + b"\nthird\n\nlast-without-newline"
    assert list(physical_lines(io.BytesIO(data))) == [
        (1, b"first"),
        (2, None),
        (3, b"third"),
        (4, b""),
        (5, b"last-without-newline"),
    ]
