"""Read-your-writes through the query service: an event produced, then read at once with
`min_seq`, timed from the produce to the answer; alone, or while other accounts' events
arrive at a steady rate (`BackgroundWrites`), as they do while a ledger runs.

The events go straight to the events topic, as the ledger writes them (one Avro body per
account event, keyed by account): the figure is the query side's, without the command
side's latency in front of it. The background load lands in bursts every
`BURST_INTERVAL_S`, as a ledger's transactions do under load (each commit makes a burst
readable at once), on accounts the probe never reads, so every probe's sequence is the
next one of its account. A run fails (`ReadYourWritesFailed`) when a read does not answer
the event it waited for, when the background load fell short of its rate, or when the
view does not end up holding every background event.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Producer

from bench.figures import latency_summary
from codec import Codec
from foundation.settings import Settings
from ledger.accounts import AccountStatus
from ledger.events import AccountEvent, EventKind

BURST_INTERVAL_S = 0.02  # a ledger commits about 40-50 transactions a second under load
BACKGROUND_ACCOUNTS = 200
BACKGROUND_RATE_SHORTFALL_MAX = 0.05  # the load is at least 95% of the rate asked, or the run fails
VIEW_CATCH_UP_S = 60.0

Get = Callable[[str], tuple[int, Any]]


class ReadYourWritesFailed(Exception):
    """A read or the load behind it was not what the figure claims: the run has no figure."""


def deposit_after(account_id: str, state: dict[str, Any]) -> AccountEvent:
    """The account's next event, a deposit of 1, after `state` (the view's account)."""
    return AccountEvent(
        account_id=account_id,
        sequence=state["sequence"] + 1,
        kind=EventKind.DEPOSITED,
        amount=1,
        held_change=0,
        currency=state["currency"],
        balance=state["balance"] + 1,
        held=state["held"],
        available=state["available"] + 1,
        pending_in=state["pending_in"],
        pending_out=state["pending_out"],
        lower_limit=state["lower_limit"],
        upper_limit=state["upper_limit"],
        status=AccountStatus(state["status"]),
        parent_account_id=state["parent_account_id"],
        metadata=None,
        command_id=uuid.uuid4().hex,
        dedup_id=uuid.uuid4().hex,
        correlation_id=None,
        counterparty_account_id=None,
        code=None,
        occurred_at_ms=state["updated_at_ms"] + 1,
    )


def _producer(settings: Settings, **options: Any) -> Producer:
    return Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random", "acks": "all", **options}
    )


def _account(get: Get, settings: Settings, account_id: str) -> dict[str, Any]:
    status, body = get(f"{settings.query_url}/accounts/{account_id}")
    if status != 200:
        raise ReadYourWritesFailed(f"reading {account_id}: HTTP {status} {body}")
    account: dict[str, Any] = body["account"]
    return account


class BackgroundWrites:
    """Deposits of 1 to `accounts` at `rate_per_s`, in bursts, on a thread of its own."""

    def __init__(self, settings: Settings, get: Get, accounts: list[str], rate_per_s: float) -> None:
        self.settings = settings
        self.get = get
        self.rate_per_s = rate_per_s
        self.states = {account_id: _account(get, settings, account_id) for account_id in accounts}
        self.topic = f"{settings.topic_prefix}.events"
        self.produced = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-writes", daemon=True)
        self._started_s = 0.0
        self._stopped_s = 0.0

    def __enter__(self) -> BackgroundWrites:
        self._started_s = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        codec = Codec()
        producer = _producer(self.settings, **{"linger.ms": 1, "enable.idempotence": True})
        accounts = list(self.states)
        due_s = self._started_s
        try:
            while not self._stop.is_set():
                due_s += BURST_INTERVAL_S
                # The events due by now: a burst is as big as the time since the last says.
                owed = int((due_s - self._started_s) * self.rate_per_s) - self.produced
                for _ in range(max(0, owed)):
                    account_id = accounts[self.produced % len(accounts)]
                    event = deposit_after(account_id, self.states[account_id])
                    producer.produce(self.topic, codec.encode(event), account_id.encode())
                    self.states[account_id] = {
                        **self.states[account_id],
                        "sequence": event.sequence,
                        "balance": event.balance,
                        "available": event.available,
                        "updated_at_ms": event.occurred_at_ms,
                    }
                    self.produced += 1
                producer.poll(0)
                self._stop.wait(max(0.0, due_s - time.monotonic()))
        except (KafkaException, BufferError) as error:  # reported by check(): a thread's is otherwise lost
            self.failures.append(repr(error))
        finally:
            self._stopped_s = time.monotonic()
            remaining = producer.flush(30)
            if remaining:
                self.failures.append(f"{remaining} background events not acknowledged")

    def check(self, *, catch_up_s: float = VIEW_CATCH_UP_S) -> float:
        """The rate achieved; raises if it fell short, or if the view lacks an event."""
        if self.failures:
            raise ReadYourWritesFailed(f"the background writer failed: {self.failures}")
        achieved = self.produced / max(1e-9, self._stopped_s - self._started_s)
        if achieved < self.rate_per_s * (1 - BACKGROUND_RATE_SHORTFALL_MAX):
            raise ReadYourWritesFailed(f"the background load was {achieved:.0f}/s, not {self.rate_per_s:.0f}/s")
        deadline = time.monotonic() + catch_up_s
        for account_id, state in self.states.items():
            while (seen := _account(self.get, self.settings, account_id))["sequence"] < state["sequence"]:
                if time.monotonic() > deadline:
                    raise ReadYourWritesFailed(
                        f"the view holds {account_id} at sequence {seen['sequence']}, not {state['sequence']}"
                    )
                time.sleep(0.1)
        return achieved


def read_your_writes(
    settings: Settings, get: Get, accounts: list[str], runs: int, rng: random.Random, *, background_rate: float = 0.0
) -> dict[str, Any]:
    """`runs` probes on `accounts`; with `background_rate`, while that many events a second
    arrive for other accounts (taken from the same list, never probed)."""
    accounts = list(accounts)
    rng.shuffle(accounts)
    background = accounts[:BACKGROUND_ACCOUNTS] if background_rate else []
    probed = accounts[len(background) :]
    latencies: list[float] = []
    label = "produce one event, then read it with min_seq"
    if not background_rate:
        _probe(settings, get, accounts=probed, runs=runs, rng=rng, latencies=latencies)
        return {"query": label, **latency_summary(latencies)}
    with BackgroundWrites(settings, get, background, background_rate) as load:
        _probe(settings, get, accounts=probed, runs=runs, rng=rng, latencies=latencies)
    achieved = load.check()
    return {
        "query": f"{label}, while {background_rate:,.0f} other events/s arrive",
        "background_events_per_s": round(achieved),
        **latency_summary(latencies),
    }


def _probe(
    settings: Settings, get: Get, *, accounts: list[str], runs: int, rng: random.Random, latencies: list[float]
) -> None:
    codec = Codec()
    producer = _producer(settings)
    topic = f"{settings.topic_prefix}.events"
    for _ in range(runs):
        account_id = rng.choice(accounts)
        event = deposit_after(account_id, _account(get, settings, account_id))
        started = time.perf_counter()
        producer.produce(topic, codec.encode(event), account_id.encode())
        producer.flush(10)
        status, body = get(f"{settings.query_url}/accounts/{account_id}?min_seq={event.sequence}")
        latencies.append((time.perf_counter() - started) * 1000)
        if status != 200 or body["account"]["sequence"] != event.sequence:
            raise ReadYourWritesFailed(f"read with min_seq={event.sequence}: HTTP {status} {body}")
