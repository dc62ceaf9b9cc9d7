"""`./sw up` on the user's terminal: Ctrl-C (or SIGTERM) at any moment stops what it
started, says what keeps running and how to stop it, and exits cleanly; neither Maven's
escape codes nor librdkafka's own log lines reach the terminal. A schema registry is part of
the stack only with the Confluent framing: none by default, a local one otherwise."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deploy.local import kafka, registry
from foundation.clients import kafka_config
from foundation.settings import Settings
from streamwallet import up as up_registry
from tests.conftest import TEST_REGISTRY_PORTS, fresh_settings

START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 120.0
PIPE_CLOSE_TIMEOUT_S = 10.0


class Up:
    """`streamwallet up` as a subprocess, its stdout read line by line on a thread."""

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamwallet.cli", "up", "--workers", "1", "--no-demo", "--run-dir", str(run_dir)],
            env={**os.environ, **settings.environment()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._errors: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._errors_reader = threading.Thread(target=self._read_errors, daemon=True)
        self._errors_reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._errors.append(line)

    def wait_for(self, phrase: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                break
            self.output.append(line)
            if phrase in line:
                return
        errors = self.finish()[1] if self.process.poll() is not None else ""
        raise AssertionError(f"{phrase!r} not printed; got {''.join(self.output)!r}, stderr {errors!r}")

    def finish(self) -> tuple[str, str]:
        """Wait for the exit; (all of stdout, all of stderr). Each wait has a deadline, so a
        stack that does not stop (or a child that outlives it, holding its pipes) fails the
        test with what it printed, instead of hanging the suite."""
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(
                f"`up` did not exit within {STOP_TIMEOUT_S} s; printed {''.join(self.output)!r}, "
                f"stderr {''.join(self._errors)!r}"
            ) from None
        self._errors_reader.join(PIPE_CLOSE_TIMEOUT_S)
        try:
            while (line := self.lines.get(timeout=PIPE_CLOSE_TIMEOUT_S)) is not None:  # None: the reader hit EOF
                self.output.append(line)
        except queue.Empty:
            raise AssertionError(
                f"`up` exited, but its stdout stayed open for {PIPE_CLOSE_TIMEOUT_S} s: a child outlived it"
            ) from None
        if self._errors_reader.is_alive():
            raise AssertionError(
                f"`up` exited, but its stderr stayed open for {PIPE_CLOSE_TIMEOUT_S} s: a child outlived it"
            )
        return "".join(self.output), "".join(self._errors)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # it stops its own children
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def assert_clean_exit(up: Up, settings: Settings) -> None:
    output, errors = up.finish()
    assert up.process.returncode == 0, (output, errors)
    assert "Traceback" not in errors, errors
    assert not raw_librdkafka_lines(errors), errors  # librdkafka's lines go through Python logging
    assert "stopped the workers, the query service and the gateway" in output, output
    assert f"the Kafka at {settings.bootstrap_servers} was running before and keeps running" in output, output
    assert "./sw kafka stop" in output, output
    worker_ready = f"http://127.0.0.1:{settings.worker_web_port + 1}/ready"
    assert not answers(f"{settings.query_url}/ready") and not answers(worker_ready), "a process was left running"


@pytest.mark.kafka
def test_ctrl_c_on_a_running_stack_stops_it_says_what_keeps_running_and_exits_0(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = fresh_settings(kafka_bootstrap, tmp_path)
    up = Up(settings, tmp_path / "run")
    try:
        up.wait_for("press Ctrl-C to stop it")
        assert answers(f"{settings.query_url}/ready")
        up.process.send_signal(signal.SIGINT)
        assert_clean_exit(up, settings)
        assert "registry" not in "".join(up.output), "the default framing needs no schema registry"
        assert "not running" in registry.status(name=up_registry.REGISTRY_NAME), "none was started"
    finally:
        up.kill()


@pytest.mark.kafka
def test_the_confluent_framing_brings_up_a_local_registry_that_outlives_the_stack(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    port = next((port for port in reversed(TEST_REGISTRY_PORTS) if kafka._port_free(port)), None)
    assert port is not None
    url = f"http://127.0.0.1:{port}{registry.CONFLUENT_API_PATH}"
    settings = fresh_settings(kafka_bootstrap, tmp_path, avro_framing="confluent", schema_registry_url=url)
    assert not registry.answers(url)
    up = Up(settings, tmp_path / "run")
    try:
        up.wait_for(f"(schema registry) ready at {url}")
        up.wait_for("press Ctrl-C to stop it")
        # The processes registered the public records' schemas in it (they write the Confluent framing).
        with urllib.request.urlopen(f"{url}/subjects", timeout=10) as response:
            subjects = json.loads(response.read())
        assert any(subject.endswith(".AccountEvent") for subject in subjects), subjects
        up.process.send_signal(signal.SIGINT)
        assert_clean_exit(up, settings)
        assert f"the schema registry keeps running at {url}; stop it with: ./sw registry stop" in "".join(up.output)
        assert registry.answers(url)
    finally:
        up.kill()
        registry.stop(name=up_registry.REGISTRY_NAME)
    assert not registry.answers(url)


@pytest.mark.kafka
def test_sigterm_while_the_stack_is_starting_stops_what_was_started(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = fresh_settings(kafka_bootstrap, tmp_path)
    up = Up(settings, tmp_path / "run")
    try:
        up.wait_for("using the Kafka already running")
        time.sleep(1)  # the processes are starting
        up.process.send_signal(signal.SIGTERM)
        assert_clean_exit(up, settings)
    finally:
        up.kill()


def test_fetching_the_kafka_jars_prints_no_escape_codes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Maven 3.8 resets the terminal's colours (ESC[0m) on exit even with -B -q
    -Dstyle.color=never; the fetch must not let that through. Uses the shared Maven
    repository, so nothing is downloaded twice."""
    monkeypatch.setattr(kafka, "CACHE_DIR", tmp_path)
    (tmp_path / "m2").symlink_to(kafka.PROJECT_ROOT / ".cache" / "m2", target_is_directory=True)
    lib_dir = kafka.kafka_lib_dir()
    assert (lib_dir / ".complete").exists() and any(lib_dir.glob("kafka_2.13-*.jar"))
    captured = capfd.readouterr()
    assert "\x1b" not in captured.out + captured.err, repr(captured)


def raw_librdkafka_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("%")]


def test_clients_from_kafka_config_send_librdkafka_lines_through_python_logging(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from confluent_kafka import Producer

    settings = Settings.from_environment({}, bootstrap_servers="127.0.0.1:1")  # nothing listens: FAIL lines
    # Its own client id: a raw line of a client another test left alive (librdkafka writes to
    # this process's file descriptor 2) is not this producer's.
    producer = Producer({**kafka_config(settings), "client.id": "raw-lines-probe"})
    with caplog.at_level(logging.INFO, logger="librdkafka"):
        deadline = time.monotonic() + 3  # a refused connection is logged at once
        while time.monotonic() < deadline and not caplog.records:
            producer.poll(0.5)
    del producer
    raw = raw_librdkafka_lines(capfd.readouterr().err)
    assert not [line for line in raw if "|raw-lines-probe#" in line], raw  # nothing raw on the terminal
    said = [record.getMessage() for record in caplog.records]
    assert any("Connection refused" in line and "raw-lines-probe#" in line for line in said), said
