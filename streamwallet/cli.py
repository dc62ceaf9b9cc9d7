"""streamwallet's command line.

    streamwallet up [--workers N] [--exit-after-demo]   Kafka, topics, workers, query service, gateway, demo
    streamwallet test                               (see ./sw: ruff, mypy, pytest)
    streamwallet kafka start|stop|status [--brokers 1|3]
    streamwallet registry start|stop|status         the local schema registry (Apicurio), for the Confluent framing
    streamwallet kafka acls [--apply] [--principal ROLE=User:NAME ...]   the ACLs each principal needs
    streamwallet topics create|describe
    streamwallet worker | query | gateway           one process of the stack
    streamwallet demo                               the demonstration workload against a running stack
    streamwallet reconcile [--via auto|service|direct]     the views against the command side and the events
    streamwallet verify [--topic NAME] [--json]      every account's hash chain and sequence in the events topic
    streamwallet rebuild-views [--via auto|service|direct] every view again from offset zero, with progress
    streamwallet apikeys create|list|revoke         API keys for services (streamwallet/api_keys_command.py)

Daily operations (each has --help; --json prints JSON instead of text):
    streamwallet account show ID [--events N] [--min-seq N] [--no-holds]
    streamwallet submit TYPE --field value ...  |  submit --body '{...}' (or --body - for stdin)
    streamwallet load FILE.csv|FILE.jsonl [--results OUT.jsonl] [--window N] [--timeout-s S]
    streamwallet tail events|results|deadletter|commands [--from-beginning] [--account ID] [--no-follow]
    streamwallet deadletter redrive [--reason CODE] [--dry-run] [--include-legs] [--again]
    streamwallet flows in-flight [--partition N]    unfinished flows across partitions, from the changelog

Exit codes of these and of reconcile:
EXIT_CODES

Configuration comes from STREAMWALLET_* environment variables (foundation/settings.py).
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from foundation.settings import PROJECT_ROOT, Settings
from streamwallet import api_keys_command, operator_parsers
from streamwallet.exit_codes import EXIT_CODES_HELP, CommandError

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report it


def _logging(level: str, settings: Settings | None = None, *, service: str = "streamwallet") -> None:
    """The root logger at `level`, in the settings' log format (text for the commands a
    person runs: foundation/observability.py)."""
    from foundation.observability import configure_logging

    log_format = "text" if settings is None else settings.log_format
    configure_logging(log_format=log_format, level=level, service=service)


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from deploy.local import kafka

    if args.action == "acls":
        return cmd_kafka_acls(args, settings)
    port = int(settings.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
    if args.action == "start":
        try:
            cluster = kafka.start(name=args.name, brokers=args.brokers, base_port=port)
        except (RuntimeError, TimeoutError) as refused:  # a port in use, a stopped broker, no answer
            raise CommandError(str(refused)) from refused
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


def cmd_kafka_acls(args: argparse.Namespace, settings: Settings) -> int:
    """Print the ACLs of the topology (kafka-acls.sh lines), or create them as this user."""
    from foundation.clients import kafka_config
    from topologies.access import Role, grants, kafka_acls_commands, principals_from
    from topologies.admin import ensure_acls

    try:
        principals = principals_from(args.principal, prefix=settings.topic_prefix)
    except ValueError as error:
        print(f"--principal {error}", file=sys.stderr)
        return 2
    declared = grants(settings.topology(), principals)
    if args.apply:
        _check_kafka(settings)
        created = ensure_acls(kafka_config(settings), declared)
        print(f"created {len(created)} of {len(declared)} ACLs; the others existed")
        return 0
    for role in Role:
        print(f"# {role.value}: {principals[role]}")
        print("\n".join(kafka_acls_commands([g for g in declared if g.role is role], bootstrap_servers="$BOOTSTRAP")))
    return 0


def _check_kafka(settings: Settings) -> None:
    """Fail at start-up with the reason (authentication, TLS, protocol) rather than retry in silence."""
    from foundation.clients import KafkaAccessError, check_kafka_access

    try:
        check_kafka_access(settings)
    except KafkaAccessError as error:
        print(f"cannot start: {error}", file=sys.stderr)
        sys.exit(2)


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from foundation.clients import kafka_config
    from topologies.admin import describe, ensure_topics

    topology = settings.topology()
    if args.action == "create":
        _check_kafka(settings)
        created = ensure_topics(kafka_config(settings), topology)
        print(f"created {created}" if created else "all topics exist and match the topology")
    for spec in topology.all():
        print(describe(spec))
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import run_worker

    _check_kafka(settings)
    run_worker(settings, loglevel=args.log_level)
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.app import run_query_service

    _logging(args.log_level, settings, service="streamwallet-query")
    _check_kafka(settings)
    run_query_service(settings)
    return 0


def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.app import run_gateway

    _logging(args.log_level, settings, service="streamwallet-gateway")
    _check_kafka(settings)
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


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from streamwallet.verify import verify_command

    _logging("warning")
    return verify_command(settings, topic=args.topic, as_json=args.json)


def cmd_rebuild_views(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.commands import rebuild_command

    _logging("warning")
    return rebuild_command(settings, via=args.via)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from streamwallet.up import UpOptions, run_up

    _logging("warning")
    options = UpOptions(
        workers=args.workers,
        run_dir=args.run_dir,
        demo=not args.no_demo,
        exit_after_demo=args.exit_after_demo,
        stop_kafka=args.stop_kafka,
    )
    return run_up(settings, options)


def cmd_account(args: argparse.Namespace, settings: Settings) -> int:
    from streamwallet.account_show import show_account

    _logging("warning")
    return show_account(
        settings, args.account_id, events=args.events, holds=not args.no_holds, min_seq=args.min_seq, as_json=args.json
    )


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from streamwallet.submit import read_body, submit_command
    from streamwallet.submit_options import body_from_options

    _logging("warning")
    body = read_body(args.body) if args.type is None else body_from_options(args)
    timeout_s = args.timeout_s if args.timeout_s is not None else settings.gateway_result_timeout_ms / 1000
    return submit_command(settings, body, timeout_s=timeout_s, as_json=args.json)


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    from streamwallet.load import load_file

    _logging("warning")
    return load_file(
        settings,
        args.file,
        file_type=args.format,
        dedup_prefix=args.dedup_prefix,
        window=args.window,
        timeout_s=args.timeout_s,
        results_path=args.results,
        as_json=args.json,
    )


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from streamwallet.tail import TailOptions, tail_topic

    _logging("warning")
    options = TailOptions(
        from_beginning=args.from_beginning,
        account=args.account,
        follow=not args.no_follow,
        max_messages=args.max,
        as_json=args.json,
    )
    return tail_topic(settings, args.topic, options)


def cmd_deadletter(args: argparse.Namespace, settings: Settings) -> int:
    from streamwallet.redrive import RedriveOptions, redrive_dead_letters

    _logging("warning")
    options = RedriveOptions(
        reasons=frozenset(args.reason or ()),
        dry_run=args.dry_run,
        include_legs=args.include_legs,
        again=args.again,
        as_json=args.json,
    )
    return redrive_dead_letters(settings, options)


def cmd_flows(args: argparse.Namespace, settings: Settings) -> int:
    from streamwallet.flows_in_flight import show_in_flight

    _logging("warning")
    return show_in_flight(settings, partition=args.partition, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line's grammar (tests parse the command lines the docs quote with it)."""
    parser = argparse.ArgumentParser(
        prog="streamwallet",
        description=(__doc__ or "").replace("EXIT_CODES", EXIT_CODES_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="info")
    commands = parser.add_subparsers(dest="command", required=True)
    kafka_parser = commands.add_parser("kafka", help="the local broker")
    kafka_parser.add_argument("action", choices=["start", "stop", "status", "acls"])
    kafka_parser.add_argument("--name", default="dev")
    kafka_parser.add_argument("--brokers", type=int, default=1, choices=[1, 3])
    kafka_parser.add_argument("--wipe", action="store_true")
    registry_parser = commands.add_parser("registry", help="the local schema registry (Apicurio)")
    registry_parser.add_argument("action", choices=["start", "stop", "status"])
    registry_parser.add_argument("--name", default="dev")
    kafka_parser.add_argument(
        "--apply", action="store_true", help="acls: create them (as an operator) instead of printing"
    )
    kafka_parser.add_argument(
        "--principal", action="append", default=[], help="acls: ROLE=User:NAME (default User:<prefix>-<role>)"
    )
    topics_parser = commands.add_parser("topics", help="create or describe the topology's topics")
    topics_parser.add_argument("action", choices=["create", "describe"])
    commands.add_parser("worker", help="run a ledger worker")
    commands.add_parser("query", help="run the query service (events sink + reads)")
    commands.add_parser("gateway", help="run the HTTP gateway")
    commands.add_parser("demo", help="run the demonstration workload against a running stack")
    operator_parsers.add_all(
        commands,
        handlers={
            "account": cmd_account,
            "submit": cmd_submit,
            "load": cmd_load,
            "tail": cmd_tail,
            "deadletter": cmd_deadletter,
            "flows": cmd_flows,
        },
    )
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
    verify_parser = commands.add_parser(
        "verify",
        help="check every account's hash chain and sequence in the events topic; exit 1 on a break",
        description=operator_parsers.module_doc("streamwallet.verify"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify_parser.add_argument("--topic", default=None, help="a topic of events to verify (default: the events topic)")
    verify_parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    api_keys_command.add_parser(commands)
    up_parser = commands.add_parser("up", help="start everything locally and run the demo")
    up_parser.add_argument("--workers", type=int, default=2)
    up_parser.add_argument("--exit-after-demo", action="store_true")
    up_parser.add_argument("--stop-kafka", action="store_true", help="stop the broker too when leaving")
    up_parser.add_argument("--no-demo", action="store_true", help="start the stack without running the demo")
    up_parser.add_argument("--run-dir", type=Path, default=PROJECT_ROOT / ".run", help="logs go to RUN_DIR/logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        "verify": cmd_verify,
        "rebuild-views": cmd_rebuild_views,
        "up": cmd_up,
        "apikeys": api_keys_command.run,
    }
    handler = getattr(args, "handler", None) or handlers[args.command]
    try:
        return int(handler(args, settings))
    except CommandError as error:
        print(f"streamwallet {args.command}: {error}", file=sys.stderr)
        return int(error.code)
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
