"""Faust's own exactly-once agent (bench/faust_native.py) as a process of a benchmark: its
topics, its start, kill -9 and stop. Faust's deposits are `<command id>:<amount>` keyed by
account; each output is `<command id>:<new balance>`."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.topics import Outputs
from bench.workloads import one_key_per_partition

STOP_TIMEOUT_S = 60.0


def command_id_of_output(message: Any) -> bytes | None:
    """The command id an output of the Faust agent answers."""
    value: bytes | None = message.value()
    return None if value is None else value.split(b":", 1)[0]


@dataclasses.dataclass
class FaustWorker:
    bootstrap_servers: str
    prefix: str
    partitions: int
    run_dir: Path
    web_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def deposits_topic(self) -> str:
        return f"{self.prefix}.faust-deposits"

    @property
    def outputs_topic(self) -> str:
        return f"{self.prefix}.faust-applied"

    @property
    def changelog_topic(self) -> str:
        """The balances table's changelog, named by Faust: <app id>-<table>-changelog."""
        return f"{self.prefix}-faust-native-balances-changelog"

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"faust-{self.prefix}.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the Faust worker was never started")
        return self.process.pid

    def create_topics(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        topics = [NewTopic(topic, self.partitions, 1) for topic in (self.deposits_topic, self.outputs_topic)]
        for future in admin.create_topics(topics).values():
            future.result()

    def deposit(self, producer: Producer, *, command_id: bytes, account: bytes, amount: int) -> None:
        producer.produce(self.deposits_topic, b"%s:%d" % (command_id, amount), account)
        producer.poll(0)

    def answers_on_every_partition(
        self, producer: Producer, outputs: Outputs, *, round_name: str, timeout_s: float
    ) -> bool:
        """Send a deposit of 0 to a probe account on every partition and wait for every answer:
        True when the worker answers on all of them (started, or recovered after a kill), False
        after `timeout_s` or as soon as the worker exits."""
        probes = {
            f"probe-{round_name}-p{partition}".encode(): key.encode()
            for partition, key in enumerate(one_key_per_partition(f"probe-{round_name}", self.partitions))
        }
        for command_id, account in probes.items():
            self.deposit(producer, command_id=command_id, account=account, amount=0)
        producer.flush(timeout_s)
        return outputs.wait_for(probes, timeout_s=timeout_s, still_worth_waiting=lambda: self.alive)

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"the Faust worker is running (pid {self.pid})")
        environment = {
            **os.environ,
            "STREAMWALLET_TOPIC_PREFIX": self.prefix,
            "STREAMWALLET_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "STREAMWALLET_PARTITIONS": str(self.partitions),
            "STREAMWALLET_DATA_DIR": str(self.run_dir / f"faust-{self.prefix}"),
            "STREAMWALLET_WORKER_WEB_PORT": str(self.web_port),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.faust_native", "worker"],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def kill(self) -> None:
        """kill -9: no goodbye, no commit, no leaving the group."""
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or not self.alive:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, characters: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except FileNotFoundError:
            return ""
