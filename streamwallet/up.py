"""`streamwallet up` (what `./sw up` runs): the broker, the topics, N workers, the query
service and the gateway on this machine, then the demo; running until Ctrl-C.

No schema registry by default: the default framing (`STREAMWALLET_AVRO_FRAMING=single-object`)
needs none. With `STREAMWALLET_AVRO_FRAMING=confluent` a registry is part of the stack: the one
at `STREAMWALLET_SCHEMA_REGISTRY_URL` if it answers, else a local Apicurio Registry started
here (on that URL's port, 8085 if unset), which outlives `up` like the broker.

Ctrl-C (or SIGTERM), at any moment, stops the processes this command started and says
what keeps running: the Kafka broker, which outlives `up` so that the next start is
quick and the data stays, with the command that stops it.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from foundation.clients import kafka_config
from foundation.settings import Settings
from streamwallet.exit_codes import CommandError, ExitCode

KAFKA_NAME = "dev"
REGISTRY_NAME = "dev"  # the one `./sw registry start|stop` acts on
CONFLUENT_FRAMING = "confluent"
KAFKA_PROBE_TIMEOUT_S = 2.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class UpOptions:
    workers: int
    run_dir: Path
    demo: bool
    exit_after_demo: bool
    stop_kafka: bool


def run_up(settings: Settings, options: UpOptions) -> int:
    from deploy.local import kafka
    from streamwallet.stack import Stack

    previous = signal.signal(signal.SIGTERM, _interrupt)
    stack = Stack(settings, options.run_dir)
    kafka_started_here: bool | None = None  # None: not known yet
    registry_started_here = False
    try:
        kafka_started_here = not _kafka_answers(kafka_config(settings))
        if kafka_started_here:
            cluster = kafka.start(name=KAFKA_NAME, brokers=1, base_port=kafka_port(settings))
            print(f"Kafka {kafka.KAFKA_VERSION} (KRaft, single node) ready at {cluster.bootstrap_servers}", flush=True)
        else:
            print(f"using the Kafka already running at {settings.bootstrap_servers}", flush=True)
        settings, registry_started_here = _with_schema_registry(settings)
        stack = Stack(settings, options.run_dir)
        return _run(settings, options, stack)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return ExitCode.OK
    except (RuntimeError, TimeoutError, KafkaException) as error:  # a process that died starting, a bad topic
        raise CommandError(f"the stack did not start: {error}") from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stopping short
        stack.stop_all()
        _say_what_keeps_running(settings, options, stopped=bool(stack.processes), kafka_started_here=kafka_started_here)
        if registry_started_here:
            print(
                f"the schema registry keeps running at {stack.settings.schema_registry_url}; "
                "stop it with: ./sw registry stop",
                flush=True,
            )
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _with_schema_registry(settings: Settings) -> tuple[Settings, bool]:
    """The settings the stack runs with, and whether a registry was started here: none for
    the default framing; for the Confluent framing, the configured registry if it answers,
    else a local one (only on this machine's loopback: a remote URL that does not answer
    stops `up` with the reason)."""
    if settings.avro_framing != CONFLUENT_FRAMING:
        return settings, False
    from deploy.local import registry

    url = settings.schema_registry_url
    if url and registry.answers(url):
        print(f"using the schema registry already running at {url}", flush=True)
        return settings, False
    parts = urllib.parse.urlsplit(url)
    if url and parts.hostname not in ("127.0.0.1", "localhost"):
        raise CommandError(f"the schema registry at {url} does not answer (STREAMWALLET_SCHEMA_REGISTRY_URL)")
    started = registry.start(name=REGISTRY_NAME, port=parts.port or registry.REGISTRY_PORT_DEFAULT)
    print(f"Apicurio Registry {registry.APICURIO_VERSION} (schema registry) ready at {started.url}", flush=True)
    return dataclasses.replace(settings, schema_registry_url=started.url), True


def kafka_port(settings: Settings) -> int:
    return int(settings.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])


def _run(settings: Settings, options: UpOptions, stack: Any) -> int:
    from streamwallet.demo import run_demo
    from streamwallet.dev_keys import issue_dev_keys, usage
    from topologies.admin import ensure_topics

    started = time.monotonic()
    ensure_topics(kafka_config(settings), settings.topology())
    processes = [stack.worker(index).start() for index in range(1, options.workers + 1)]
    processes += [stack.query().start(), stack.gateway().start()]
    for process in processes:
        process.wait_ready()
    stack.supervise()  # a process that dies is restarted, with back-off, like an orchestrator would
    print(
        f"stack up in {time.monotonic() - started:.1f}s: {options.workers} worker(s), query service at "
        f"{settings.query_url}, gateway at {settings.gateway_url}; logs in {options.run_dir / 'logs'}/",
        flush=True,
    )
    keys = issue_dev_keys(settings)
    print(usage(keys, settings), flush=True)
    ok = True
    if options.demo:
        try:
            ok = run_demo(settings, api_key=keys.admin)
        except TimeoutError:
            ok = False
            print("the demo did not get every result in time; see the logs", file=sys.stderr, flush=True)
    if options.exit_after_demo:
        return ExitCode.OK if ok else ExitCode.NO
    print("\nThe stack keeps running; press Ctrl-C to stop it.", flush=True)
    while True:
        time.sleep(3600)  # until Ctrl-C or SIGTERM (KeyboardInterrupt)


def _say_what_keeps_running(
    settings: Settings, options: UpOptions, *, stopped: bool, kafka_started_here: bool | None
) -> None:
    from deploy.local import kafka

    if stopped:
        print("stopped the workers, the query service and the gateway", flush=True)
    if kafka_started_here is None:
        return
    if options.stop_kafka and kafka_started_here:
        kafka.stop(name=KAFKA_NAME)
        print("stopped Kafka", flush=True)
        return
    if kafka_started_here:
        print(
            f"Kafka keeps running at {settings.bootstrap_servers} (data in {kafka.RUN_DIR / KAFKA_NAME}); "
            "stop it with: ./sw kafka stop",
            flush=True,
        )
    else:
        print(
            f"the Kafka at {settings.bootstrap_servers} was running before and keeps running "
            "(if an earlier ./sw up started it: ./sw kafka stop)",
            flush=True,
        )


def _kafka_answers(client_config: dict[str, Any]) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({**client_config, "log_level": 0}).list_topics(timeout=KAFKA_PROBE_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - any failure means there is no broker to reuse
        return False
    return True
