"""The operator's commands for real: a broker, a ledger worker and the query service as
separate processes, and `python -m streamwallet.cli ...` run as a subprocess the way an
operator (or a script) runs it, judged by its exit code and its output."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from foundation.settings import Settings
from streamwallet.stack import Stack
from tests.conftest import fresh_settings
from tests.support import run_cli

pytestmark = pytest.mark.kafka

CLI_TIMEOUT_S = 120.0
CLI_PRINCIPAL = "cli-tester"


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One worker and the query service, shared by this module's tests (each uses accounts of its own)."""
    folder = tmp_path_factory.mktemp("operator-cli")
    # The CLI acts as one principal with every role that sends money (OWNER of the accounts it
    # opens, as each OpenAccount below names it; OPERATOR and ADMIN for the rest).
    settings = fresh_settings(
        kafka_bootstrap, folder, cli_principal_id=CLI_PRINCIPAL, cli_principal_roles="OWNER,OPERATOR,ADMIN"
    )
    stack = Stack(settings, folder)
    processes = [stack.worker(1).start(), stack.query().start()]
    try:
        for process in processes:
            process.wait_ready()
        yield settings
    finally:
        stack.stop_all()


def cli(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, *args, stdin=stdin)


def cli_json(settings: Settings, *args: str, expect: int = 0) -> Any:
    done = cli(settings, *args, "--json")
    assert done.returncode == expect, (args, done.stdout, done.stderr)
    return json.loads(done.stdout)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def open_with_funds(settings: Settings, account: str, amount: str | None) -> None:
    """Open a USD account and deposit `amount` in it."""
    opened = cli_json(
        settings,
        "submit",
        "OpenAccount",
        "--dedup-id",
        "open",
        "--account-id",
        account,
        "--currency",
        "USD",
        "--owner",
        CLI_PRINCIPAL,
    )
    assert opened["status"] == "ACCEPTED", opened
    if amount is None:
        return
    deposit = cli_json(
        settings,
        "submit",
        "Deposit",
        "--dedup-id",
        "fund",
        "--account-id",
        account,
        "--amount",
        amount,
        "--currency",
        "USD",
    )
    assert deposit["status"] == "ACCEPTED", deposit


def shown_account(settings: Settings, account: str, min_seq: int) -> dict[str, Any]:
    shown = cli_json(settings, "account", "show", account, "--events", "0", "--no-holds", "--min-seq", str(min_seq))
    account_record: dict[str, Any] = shown["account"]
    return account_record


def newest_sequences(results: Path) -> dict[str, int]:
    """account -> the newest sequence any result of a load's --results file reports for it."""
    newest: dict[str, int] = {}
    for line in results.read_text().splitlines():
        for position in json.loads(line).get("positions", []):
            newest[position["account_id"]] = max(newest.get(position["account_id"], 0), position["sequence"])
    return newest


# -- submit and account show ---------------------------------------------------------------------


def test_submit_prints_the_result_and_exits_by_it_and_account_show_renders_the_account(deployment: Settings) -> None:
    settings = deployment
    alice = unique("alice")
    done = cli(
        settings,
        "submit",
        "OpenAccount",
        "--dedup-id",
        "o1",
        "--account-id",
        alice,
        "--currency",
        "USD",
        "--owner",
        CLI_PRINCIPAL,
    )
    assert done.returncode == 0 and done.stdout.startswith("ACCEPTED  OpenAccount"), done.stdout + done.stderr

    deposit_args = ["submit", "Deposit", "--dedup-id", "d1", "--account-id", alice, "--amount", "12.34"]
    deposited = cli_json(settings, *deposit_args, "--currency", "USD")
    assert deposited["status"] == "ACCEPTED" and deposited["replayed"] is False
    assert deposited["positions"][0]["balance"] == "12.34" and deposited["positions"][0]["balance_minor"] == 1234

    repeat = cli(settings, *deposit_args, "--currency", "USD")
    assert repeat.returncode == 0 and "a repeat: answered from the dedup memory" in repeat.stdout, repeat.stdout

    refused = cli(
        settings,
        "submit",
        "Withdraw",
        "--dedup-id",
        "w1",
        "--account-id",
        alice,
        "--amount",
        "100.00",
        "--currency",
        "USD",
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stdout.startswith("REJECTED  Withdraw") and "INSUFFICIENT_FUNDS" in refused.stdout

    hold = {
        "type": "PlaceHold",
        "dedup_id": "h1",
        "account_id": alice,
        "hold_id": "rent",
        "amount": "2.50",
        "currency": "USD",
        "ttl_ms": 3_600_000,
    }
    placed = cli(settings, "submit", "--body", "-", "--json", stdin=json.dumps(hold))
    assert placed.returncode == 0, placed.stdout + placed.stderr
    sequence = json.loads(placed.stdout)["positions"][0]["sequence"]

    shown = cli(settings, "account", "show", alice, "--min-seq", str(sequence))
    assert shown.returncode == 0, shown.stderr
    lines = [" ".join(line.split()) for line in shown.stdout.splitlines()]
    assert lines[0] == f"account {alice} USD ACTIVE"
    assert {
        "balance 12.34",
        "available 9.84",
        "held 2.50",
        "pending in 0.00",
        "lower limit 0.00",
        "upper limit none",
    } <= set(lines), shown.stdout
    assert "open holds: 1 (from the command side)" in lines
    assert any(line.startswith("rent 2.50 OPEN expires") for line in lines), shown.stdout
    assert [line.split()[1] for line in lines if line[:1].isdigit()] == ["HOLD_PLACED", "DEPOSITED", "OPENED"]

    document = cli_json(settings, "account", "show", alice, "--events", "1")
    assert document["account"]["balance_minor"] == 1234 and document["account"]["available"] == "9.84"
    assert [(hold["hold_id"], hold["amount"], hold["amount_minor"]) for hold in document["open_holds"]] == [
        ("rent", "2.50", 250)
    ]
    assert [event["kind"] for event in document["events"]] == ["HOLD_PLACED"]

    missing = cli(settings, "account", "show", unique("nobody"))
    assert missing.returncode == 1 and "not found" in missing.stderr


# -- load ------------------------------------------------------------------------------------------

HOSTILE_CSV_TABLE: list[tuple[bytes, str]] = [  # (a line of the file, the outcome it must get [and its code])
    (b"{a},{b},1.00,USD", "ACCEPTED"),
    (b"{a},{b},1.005,USD", "INVALID_LINE"),  # more decimals than USD has: refused, never rounded
    (b"{a},{b},1.00", "INVALID_LINE"),  # a field short
    (b'{a},"{b},1.00,USD', "INVALID_LINE"),  # a quote never closed
    (b"{a},{b},\xff1.00,USD", "INVALID_LINE"),  # not UTF-8
    (b"{a},{b},1.00,USD," + b"9" * 70_000, "INVALID_LINE"),  # a huge line
    (b"{a},{b},abc,USD", "INVALID_LINE"),
    (b"{a},{b},1.00,XXX", "INVALID_LINE"),  # no such currency
    (b"{a},{b}\x00,1.00,USD", "INVALID_LINE MALFORMED"),  # a NUL byte in an id
    (b"{a},{b},1000000.00,USD", "INSUFFICIENT_FUNDS"),
    (b"{a},{b},-1.00,USD", "INVALID_LINE INVALID_AMOUNT"),  # the ledger's rules that need no state: not sent
    (b"{a},{a},1.00,USD", "INVALID_LINE SAME_ACCOUNT"),
    (b"", ""),  # a blank line: skipped, no outcome
    (b"{a},nobody-{b},2.00,USD", "ACCOUNT_NOT_FOUND"),
    (b'"{a}", {b} ,2.00,USD', "INVALID_LINE MALFORMED"),  # cells are taken as written: " {b} " is no id
    (b"{a},{b},2.00,USD", "ACCEPTED"),
]


def test_a_hostile_csv_gets_one_outcome_per_line_and_a_rerun_applies_nothing_twice(
    deployment: Settings, tmp_path: Path
) -> None:
    settings = deployment
    a, b = unique("payer"), unique("payee")
    open_with_funds(settings, a, "10.00")
    open_with_funds(settings, b, None)
    path = tmp_path / "transfers.csv"
    rows = [line.replace(b"{a}", a.encode()).replace(b"{b}", b.encode()) for line, _ in HOSTILE_CSV_TABLE]
    path.write_bytes(b"from_account_id,to_account_id,amount,currency\n" + b"\n".join(rows) + b"\n")
    expected = {number: code.split()[0] for number, (_, code) in enumerate(HOSTILE_CSV_TABLE, start=2) if code}
    rules = {number: code.split()[1] for number, (_, code) in enumerate(HOSTILE_CSV_TABLE, start=2) if " " in code}
    results = tmp_path / "out.jsonl"

    done = cli(settings, "load", str(path), "--results", str(results), "--timeout-s", "60")
    assert done.returncode == 3, done.stdout + done.stderr
    outcomes = [json.loads(line) for line in results.read_text().splitlines()]
    assert {record["line"]: record["outcome"] for record in outcomes} == expected
    assert [record["line"] for record in outcomes] == sorted(expected)  # in line order
    assert {record["line"]: record["code"] for record in outcomes if record["line"] in rules} == rules
    assert all(record["dedup_id"] == f"transfers.csv:{record['line']}" for record in outcomes if "dedup_id" in record)
    for number, code in expected.items():
        if code != "ACCEPTED":
            assert f"{path}:{number}: {code}: {rules.get(number, '')}" in done.stderr, (number, done.stderr)
    assert "USD has 2 decimal places" in done.stderr and "not UTF-8 (byte 0xff" in done.stderr
    assert "longer than 65536 bytes" in done.stderr and "3 fields; the header has 4" in done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr  # no progress bar off a terminal
    summary = {line.split()[0]: int(line.split()[1]) for line in done.stdout.splitlines()[1:]}
    assert summary == {"ACCEPTED": 2, "INVALID_LINE": 11, "INSUFFICIENT_FUNDS": 1, "ACCOUNT_NOT_FOUND": 1}
    newest = newest_sequences(results)
    assert shown_account(settings, a, newest[a])["balance_minor"] == 700
    assert shown_account(settings, b, newest[b])["balance_minor"] == 300

    again = cli(settings, "load", str(path), "--json", "--results", str(results))
    assert again.returncode == 3, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["outcomes"]["ACCEPTED"] == 2 and rerun["repeats"] == 2, rerun  # answered from the dedup memory
    newest = newest_sequences(results)  # a repeat reports the account as the first run left it
    assert shown_account(settings, a, newest[a])["balance_minor"] == 700  # nothing applied twice
    assert shown_account(settings, b, newest[b])["balance_minor"] == 300


def test_load_takes_any_command_type_from_json_lines_and_draws_progress_only_on_a_terminal(
    deployment: Settings, tmp_path: Path
) -> None:
    settings = deployment
    a, b = unique("jl-a"), unique("jl-b")
    lines = [
        {"type": "OpenAccount", "account_id": a, "currency": "EUR", "owner": CLI_PRINCIPAL},
        {"type": "OpenAccount", "account_id": b, "currency": "EUR", "owner": CLI_PRINCIPAL},
        {"type": "Deposit", "account_id": a, "amount": "50.00", "currency": "EUR"},
        {"from_account_id": a, "to_account_id": b, "amount_minor": 1000, "currency": "EUR"},  # Transfer by default
        {
            "type": "Batch",
            "batch_id": unique("batch"),
            "legs": [
                {"account_id": a, "amount": "-5.00", "currency": "EUR"},
                {"account_id": b, "amount": "5.00", "currency": "EUR"},
            ],
        },
        {"type": "PlaceHold", "account_id": b, "hold_id": "h", "amount": "1.00", "currency": "EUR", "ttl_ms": 60_000},
        {"type": "Deposit", "account_id": a, "amount": 1.5, "currency": "EUR"},  # a float: refused
        {"type": "Mint", "account_id": a},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n[1, 2]\n{not json\n" + "[" * 50_000 + "\n"
    path = tmp_path / "mixed.jsonl"
    path.write_text(text)
    results = tmp_path / "mixed-results.jsonl"

    controller, terminal = pty.openpty()  # stderr on a terminal: the bar is drawn
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamwallet.cli",
            "load",
            str(path),
            "--json",
            "--window",
            "2",
            "--results",
            str(results),
        ],
        env={**os.environ, **settings.environment()},
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    screen = _read_all(controller)
    stdout, _ = process.communicate(timeout=CLI_TIMEOUT_S)
    assert process.returncode == 3, (stdout, screen)
    summary = json.loads(stdout)
    assert summary["outcomes"] == {"ACCEPTED": 6, "INVALID_LINE": 5}, (summary, screen)
    assert "\r\x1b[K[" in screen and "100%" in screen and "11 lines" in screen, screen
    for number, reason in [
        (7, "decimal string"),
        (8, "type must be one of"),
        (9, "a line must be a JSON object"),
        (10, "not valid JSON"),
        (11, "not valid JSON"),
    ]:
        assert f"{path}:{number}: INVALID_LINE: " in screen and reason in screen, (number, screen)
    newest = newest_sequences(results)
    assert shown_account(settings, a, newest[a])["balance"] == "35.00"
    assert shown_account(settings, b, newest[b])["held"] == "1.00"


def test_ctrl_c_stops_a_load_between_lines_and_every_line_sent_gets_its_outcome(
    deployment: Settings, tmp_path: Path
) -> None:
    settings = deployment
    nobody = unique("nobody")
    path = tmp_path / "long.jsonl"
    line = json.dumps({"type": "Deposit", "account_id": nobody, "amount": "1.00", "currency": "USD"})
    path.write_text((line + "\n") * 50_000)
    results = tmp_path / "long-results.jsonl"
    loading = subprocess.Popen(
        [sys.executable, "-m", "streamwallet.cli", "load", str(path), "--results", str(results), "--window", "50"],
        env={**os.environ, **settings.environment()},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while not (results.exists() and results.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        loading.send_signal(signal.SIGINT)
        output, _ = loading.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        loading.kill()
    assert loading.returncode == 3, output
    numbers = [json.loads(record)["line"] for record in results.read_text().splitlines()]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) < 50_000  # every line sent, in order
    assert f"{len(numbers)} lines" in output and f"interrupted before line {len(numbers) + 1}" in output, output
    assert all(json.loads(record)["outcome"] == "ACCOUNT_NOT_FOUND" for record in results.read_text().splitlines())


def _read_all(descriptor: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(descriptor)
    return b"".join(chunks).decode(errors="replace")


# -- tail -----------------------------------------------------------------------------------------


def test_tail_shows_an_accounts_events_decoded_and_follows_until_interrupted(deployment: Settings) -> None:
    settings = deployment
    account = unique("tail")
    open_with_funds(settings, account, "7.25")
    done = cli(settings, "tail", "events", "--from-beginning", "--no-follow", "--account", account)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and f"{account} #2  DEPOSITED  +7.25 USD  balance 7.25" in lines[1], done.stdout

    follower = subprocess.Popen(
        [sys.executable, "-m", "streamwallet.cli", "tail", "results", "--json", "--account", account],
        env={**os.environ, **settings.environment()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # let it start reading (from the end: earlier results are not shown)
        withdrawn = cli_json(
            settings,
            "submit",
            "Withdraw",
            "--dedup-id",
            "w",
            "--account-id",
            account,
            "--amount-minor",
            "25",
            "--currency",
            "USD",
        )
        assert withdrawn["status"] == "ACCEPTED"
        assert follower.stdout is not None
        ready, _, _ = select.select([follower.stdout], [], [], CLI_TIMEOUT_S)
        first = follower.stdout.readline() if ready else ""
    finally:
        follower.send_signal(signal.SIGINT)
        _, errors = follower.communicate(timeout=CLI_TIMEOUT_S)
    shown = json.loads(first)
    assert shown["type"] == "CommandResult" and shown["value"]["command_id"] == withdrawn["command_id"]
    assert shown["value"]["positions"][0]["balance"] == 700
    assert follower.returncode == 0 and "Traceback" not in errors, errors
