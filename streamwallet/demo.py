"""The demonstration workload: a few thousand commands of every kind the ledger knows,
through Kafka and through the HTTP gateway, then a check that the results, the
command side and the ClickHouse view agree. Prints what happened."""

from __future__ import annotations

import collections
import dataclasses
import random
import time
import uuid
from typing import Any

from confluent_kafka import Producer

from foundation.clients import kafka_config
from foundation.http import request_json
from foundation.settings import Settings
from gateway.client import LedgerClient, wait_all
from ledger import commands
from ledger.events import CommandResult, ResultStatus
from ledger.money import format_amount
from ledger.principals import Principal, Role
from streamwallet.command_input import operator_principal
from streamwallet.dev_keys import DEV_ADMIN_ROLES, temporary_key

RESULT_TIMEOUT_S = 60.0
DEMO_KEY_NAME = "streamwallet-demo"  # revoked when the demo ends


def _http(
    method: str, url: str, body: dict[str, Any] | None = None, *, api_key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
    status, answer = request_json(method, url, body=body, timeout_s=30, headers=headers)
    return status, answer if isinstance(answer, dict) else {}


def run_demo(settings: Settings, *, seed: int = 7, api_key: str | None = None) -> bool:
    """The demo; its HTTP part authenticates with `api_key` (ADMIN and OPERATOR: it deposits
    and reads), or with a key made for this run and revoked after it."""
    if api_key is None:
        with temporary_key(settings, name=DEMO_KEY_NAME, roles=DEV_ADMIN_ROLES) as key:
            return _run_demo(settings, seed=seed, api_key=key)
    return _run_demo(settings, seed=seed, api_key=api_key)


def demo_principal(settings: Settings) -> Principal:
    """Who the demo's Kafka commands come from: the operator's CLI principal, also the OWNER
    of the accounts it opens (it moves money between them)."""
    principal = operator_principal(settings)
    return dataclasses.replace(principal, roles=principal.roles | {Role.OWNER})


def _run_demo(settings: Settings, *, seed: int, api_key: str) -> bool:
    random.seed(seed)
    run = uuid.uuid4().hex[:6]
    client = LedgerClient(settings)
    started = time.monotonic()
    sent: list[commands.Command] = []
    futures = []
    principal = demo_principal(settings)

    def send(command: commands.Command) -> None:
        command = dataclasses.replace(command, principal=principal)
        if isinstance(command, commands.OpenAccount):
            command = dataclasses.replace(command, owner=principal.principal_id)  # the demo moves its money
        sent.append(command)
        futures.append(client.submit(command))

    def command_id() -> str:
        return uuid.uuid4().hex

    usd = [f"demo-{run}-usd-{index}" for index in range(1, 41)]
    eur = [f"demo-{run}-eur-{index}" for index in range(1, 21)]
    currency = {account: "USD" for account in usd} | {account: "EUR" for account in eur}
    try:
        for account, code in currency.items():
            send(
                commands.OpenAccount(
                    command_id=command_id(), dedup_id=f"open-{account}", account_id=account, currency=code
                )
            )
        wait_all(futures, RESULT_TIMEOUT_S)
        for account, code in currency.items():
            send(
                commands.Deposit(
                    command_id=command_id(),
                    dedup_id=f"seed-{account}",
                    account_id=account,
                    amount=random.randint(100_000, 1_000_000),
                    currency=code,
                )
            )
        for index in range(2000):
            pool = usd if random.random() < 0.7 else eur
            source, target = random.sample(pool, 2)
            amount = random.randint(1, 5_000)
            roll = random.random()  # a few of each rejection, on purpose
            if roll < 0.02:
                target = source  # SAME_ACCOUNT
            elif roll < 0.04:
                target = random.choice(eur if pool is usd else usd)  # CURRENCY_MISMATCH
            elif roll < 0.06:
                amount = 100_000_000  # INSUFFICIENT_FUNDS
            send(
                commands.Transfer(
                    command_id=command_id(),
                    dedup_id=f"transfer-{index}",
                    from_account_id=source,
                    to_account_id=target,
                    amount=amount,
                    currency=currency[source],
                )
            )
        for index in range(200):
            account = random.choice(usd + eur)
            kind = commands.Withdraw if index % 2 else commands.Deposit
            send(
                kind(
                    command_id=command_id(),
                    dedup_id=f"cash-{index}",
                    account_id=account,
                    amount=random.randint(1, 5_000),
                    currency=currency[account],
                )
            )
        a, b, c = random.sample(usd, 3)
        send(
            commands.Batch(
                command_id=command_id(),
                dedup_id="batch-1",
                batch_id=f"batch-{run}",
                legs=[
                    commands.BatchLeg(account_id=a, amount=-300, currency="USD"),
                    commands.BatchLeg(account_id=b, amount=-200, currency="USD"),
                    commands.BatchLeg(account_id=c, amount=500, currency="USD"),
                ],
            )
        )
        send(
            commands.PlaceHold(
                command_id=command_id(),
                dedup_id="hold-1",
                account_id=a,
                hold_id="hold-1",
                amount=1_000,
                currency="USD",
                ttl_ms=60_000,
            )
        )
        wait_all(futures, RESULT_TIMEOUT_S)
        send(
            commands.CaptureHold(
                command_id=command_id(),
                dedup_id="capture-1",
                account_id=a,
                hold_id="hold-1",
                amount=600,
                to_account_id=b,
                currency="USD",
            )
        )
        send(
            commands.Deposit(
                command_id=command_id(), dedup_id="nobody", account_id=f"demo-{run}-missing", amount=100, currency="USD"
            )
        )
        duplicates = random.sample(sent[len(currency) :], 50)
        for original in duplicates:
            retry = {**{f: getattr(original, f) for f in original.__dataclass_fields__}, "command_id": command_id()}
            send(type(original)(**retry))
        poison = Producer({**kafka_config(settings)})
        poison.produce(f"{settings.topic_prefix}.commands", b"\x00 definitely not avro", b"poison")
        poison.flush(10)
        results = wait_all(futures, RESULT_TIMEOUT_S)
        elapsed = time.monotonic() - started
        consistent = _report(
            settings, sent=sent, results=results, duplicates=duplicates, currency=currency, elapsed=elapsed
        )
        return _through_http(settings, usd[0], api_key) and consistent
    finally:
        client.close()


def _through_http(settings: Settings, account: str, api_key: str) -> bool:
    status, result = _http(
        "POST",
        f"{settings.gateway_url}/v1/commands",
        {
            "type": "Deposit",
            "dedup_id": f"http-{uuid.uuid4().hex}",
            "account_id": account,
            "amount": "12.34",
            "currency": "USD",
        },
        api_key=api_key,
    )
    sequence = result["positions"][0]["sequence"] if status == 200 and result.get("positions") else 0
    read_status, read = _http(
        "GET", f"{settings.gateway_url}/v1/accounts/{account}?min_seq={sequence}", api_key=api_key
    )
    print(
        f"\nHTTP: POST /v1/commands Deposit 12.34 USD -> {status} {result.get('status')}, sequence {sequence}; "
        f"GET /v1/accounts/{account}?min_seq={sequence} -> {read_status}, "
        f"balance {format_amount(read.get('account', {}).get('balance', 0), 'USD')} USD"
    )
    return status == 200 and read_status == 200 and read["account"]["sequence"] >= sequence


def _report(
    settings: Settings,
    *,
    sent: list[commands.Command],
    results: list[CommandResult],
    duplicates: list[commands.Command],
    currency: dict[str, str],
    elapsed: float,
) -> bool:
    by_code = collections.Counter(
        "ACCEPTED" if result.status is ResultStatus.ACCEPTED else str(result.code) for result in results
    )
    replayed = sum(result.replayed for result in results)
    print(
        f"\nDemo: {len(sent)} commands, {len(results)} results in {elapsed:.1f}s "
        f"({len(sent) / elapsed:.0f} commands/s end to end, including waits)"
    )
    for code, count in by_code.most_common():
        print(f"  {code:<22} {count:>6}")
    print(f"  duplicates answered from the dedup memory: {replayed} of {len(duplicates)} resent")
    latest: dict[str, tuple[int, int]] = {}
    for result in results:
        for position in result.positions:
            if position.sequence > latest.get(position.account_id, (0, 0))[0]:
                latest[position.account_id] = (position.sequence, position.balance)
    mismatches = 0
    for account, (sequence, balance) in sorted(latest.items()):
        status, read = _http("GET", f"{settings.query_url}/accounts/{account}?min_seq={sequence}")
        if status != 200 or read["account"]["balance"] != balance:
            mismatches += 1
    totals: dict[str, int] = collections.defaultdict(int)
    for account, (_, balance) in latest.items():
        totals[currency.get(account, "USD")] += balance
    print("  total balances: " + ", ".join(f"{format_amount(total, code)} {code}" for code, total in totals.items()))
    print(f"  ClickHouse view vs. results: {len(latest) - mismatches} of {len(latest)} accounts agree")
    _, metrics = _http("GET", f"{settings.query_url}/metrics.json")
    print(
        f"  query service: {metrics['sink'].get('events_written', 0)} events written, "
        f"lag {sum(metrics['sink'].get('lag', {}).values())}"
    )
    one_each = len(results) == len(sent) and replayed == len(duplicates)
    return mismatches == 0 and one_each
