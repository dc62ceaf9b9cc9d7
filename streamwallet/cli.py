"""streamwallet's command line.

    streamwallet up [--workers N] [--exit-after-demo]   Kafka, topics, workers, query service, gateway, demo
    streamwallet test                               (see ./sw: ruff, mypy, pytest)
    streamwallet kafka start|stop|status [--brokers 1|3]
    streamwallet registry start|stop|status         the local schema registry (Apicurio), for the Confluent framing
    streamwallet topics create|describe
    streamwallet worker | query | gateway           one process of the stack
    streamwallet demo                               the demonstration workload against a running stack
    streamwallet reconcile [--via auto|service|direct]     the views against the command side and the events
    streamwallet rebuild-views [--via auto|service|direct] every view again from offset zero, with progress

Configuration comes from STREAMWALLET_* environment variables (foundation/settings.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import urllib.parse
from typing import Any

from foundation.settings import PROJECT_ROOT, Settings


def _logging(level: str, settings: Settings | None = None, *, service: str = "streamwallet") -> None:
    """The root logger at `level`, in the settings' log format (text for the commands a
    person runs: foundation/observability.py)."""
    from foundation.observability import configure_logging

    log_format = "text" if settings is None else settings.log_format
    configure_logging(log_format=log_format, level=level, service=service)


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from deploy.local import kafka

    port = int(settings.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
    if args.action == "start":
        cluster = kafka.start(name=args.name, brokers=args.brokers, base_port=port)
        print(f"Kafka {kafka.KAFKA_VERSION} ready at {cluster.bootstrap_servers}")
    elif args.action == "stop":
        kafka.stop(name=args.name, wipe=args.wipe)
    else:
        kafka.main(["status", "--name", args.name])
    return 0


def cmd_registry(args: argparse.Namespace, settings: Settings) -> int:
    from deploy.local import registry

    if args.action == "start":
        port = urllib.parse.urlsplit(settings.schema_registry_url).port or registry.REGISTRY_PORT_DEFAULT
        started = registry.start(name=args.name, port=port)
        print(f"Apicurio Registry {registry.APICURIO_VERSION} ready: STREAMWALLET_SCHEMA_REGISTRY_URL={started.url}")
    elif args.action == "stop":
        registry.stop(name=args.name)
    else:
        print(registry.status(name=args.name))
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from topologies.admin import describe, ensure_topics

    topology = settings.topology()
    if args.action == "create":
        created = ensure_topics(settings.bootstrap_servers, topology)
        print(f"created {created}" if created else "all topics exist and match the topology")
    for spec in topology.all():
        print(describe(spec))
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import run_worker

    run_worker(settings, loglevel=args.log_level)
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.app import run_query_service

    _logging(args.log_level, settings, service="streamwallet-query")
    run_query_service(settings)
    return 0


def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.app import run_gateway

    _logging(args.log_level, settings, service="streamwallet-gateway")
    run_gateway(settings)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streamwallet.demo import run_demo

    _logging("warning")
    return 0 if run_demo(settings) else 1


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.commands import reconcile_command

    _logging("warning")
    return reconcile_command(settings, via=args.via)


def cmd_rebuild_views(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.commands import rebuild_command

    _logging("warning")
    return rebuild_command(settings, via=args.via)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Everything on this machine: the broker, the topics, N workers, the query service
    and the gateway; then the demo. Runs until Ctrl-C (or right after the demo)."""
    from deploy.local import kafka
    from streamwallet.demo import run_demo
    from streamwallet.stack import Stack
    from topologies.admin import ensure_topics

    _logging("warning")
    started = time.monotonic()
    if _kafka_answers(settings.bootstrap_servers):
        print(f"using the Kafka already running at {settings.bootstrap_servers}")
    else:
        port = int(settings.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
        cluster = kafka.start(name="dev", brokers=1, base_port=port)
        print(f"Kafka {kafka.KAFKA_VERSION} (KRaft, single node) ready at {cluster.bootstrap_servers}")
    ensure_topics(settings.bootstrap_servers, settings.topology())
    stack = Stack(settings, PROJECT_ROOT / ".run")
    processes = [stack.worker(index).start() for index in range(1, args.workers + 1)]
    processes += [stack.query().start(), stack.gateway().start()]
    try:
        for process in processes:
            process.wait_ready()
        stack.supervise()  # a process that dies is restarted, with back-off, like an orchestrator would
        print(
            f"stack up in {time.monotonic() - started:.1f}s: {args.workers} worker(s), query service at "
            f"{settings.query_url}, gateway at {settings.gateway_url}; logs in .run/logs/"
        )
        ok = run_demo(settings)
        if args.exit_after_demo:
            return 0 if ok else 1
        print("\nThe stack keeps running; press Ctrl-C to stop it.")
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    finally:
        stack.stop_all()
        if args.stop_kafka:
            kafka.stop(name="dev")


def _kafka_answers(bootstrap_servers: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0}).list_topics(timeout=2)
    except Exception:  # noqa: BLE001 - any failure means there is no broker to reuse
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="streamwallet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-level", default="info")
    commands = parser.add_subparsers(dest="command", required=True)
    kafka_parser = commands.add_parser("kafka", help="the local broker")
    kafka_parser.add_argument("action", choices=["start", "stop", "status"])
    kafka_parser.add_argument("--name", default="dev")
    kafka_parser.add_argument("--brokers", type=int, default=1, choices=[1, 3])
    kafka_parser.add_argument("--wipe", action="store_true")
    registry_parser = commands.add_parser("registry", help="the local schema registry (Apicurio)")
    registry_parser.add_argument("action", choices=["start", "stop", "status"])
    registry_parser.add_argument("--name", default="dev")
    topics_parser = commands.add_parser("topics", help="create or describe the topology's topics")
    topics_parser.add_argument("action", choices=["create", "describe"])
    commands.add_parser("worker", help="run a ledger worker")
    commands.add_parser("query", help="run the query service (events sink + reads)")
    commands.add_parser("gateway", help="run the HTTP gateway")
    commands.add_parser("demo", help="run the demonstration workload against a running stack")
    for name, help_text in (
        ("reconcile", "compare the views with the command side and the events topic; exit 1 on drift"),
        ("rebuild-views", "rebuild every view from the events topic, from offset zero"),
    ):
        query_side_parser = commands.add_parser(name, help=help_text)
        query_side_parser.add_argument(
            "--via",
            choices=["auto", "service", "direct"],
            default="auto",
            help="through the running query service, or on the store in this process (auto: the service if it answers)",
        )
    up_parser = commands.add_parser("up", help="start everything locally and run the demo")
    up_parser.add_argument("--workers", type=int, default=2)
    up_parser.add_argument("--exit-after-demo", action="store_true")
    up_parser.add_argument("--stop-kafka", action="store_true", help="stop the broker too when leaving")
    args = parser.parse_args(argv)
    settings = Settings.from_environment()
    handlers: dict[str, Any] = {
        "kafka": cmd_kafka,
        "registry": cmd_registry,
        "topics": cmd_topics,
        "worker": cmd_worker,
        "query": cmd_query,
        "gateway": cmd_gateway,
        "demo": cmd_demo,
        "reconcile": cmd_reconcile,
        "rebuild-views": cmd_rebuild_views,
        "up": cmd_up,
    }
    return int(handlers[args.command](args, settings))


if __name__ == "__main__":
    sys.exit(main())
