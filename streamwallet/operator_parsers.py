"""The command-line grammar of the operator's commands (account, submit, load, tail,
deadletter, flows). Each command's --help is the docstring of the module that implements it,
read without importing that module, so that `--help` and the other commands start fast.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamwallet.command_input import FieldKind, InputError, boolean, command_fields, command_types

Handler = Callable[..., int]
RAW = argparse.RawDescriptionHelpFormatter
HISTORY_EVENTS_DEFAULT = 10
HISTORY_EVENTS_MAX = 1000  # the query service's largest history page
LOAD_WINDOW_DEFAULT = 500  # commands of a load awaiting their results at once
LOAD_WINDOW_MAX = 10_000
LOAD_RESULT_TIMEOUT_S_DEFAULT = 30.0


def module_doc(module: str) -> str:
    """A module's docstring, from its source (the module is not imported)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ""
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""


def _output_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON (one object per line) instead of text")
    return parent


def add_all(commands: Any, *, handlers: dict[str, Handler]) -> None:
    output = _output_options()
    _add_account(commands, output, handlers["account"])
    _add_submit(commands, output, handlers["submit"])
    _add_load(commands, output, handlers["load"])
    _add_tail(commands, output, handlers["tail"])
    _add_deadletter(commands, output, handlers["deadletter"])
    _add_flows(commands, output, handlers["flows"])


def _group(commands: Any, name: str, *, help: str) -> Any:
    """A command whose actions are subcommands (`account show`, `flows in-flight`)."""
    return commands.add_parser(name, help=help).add_subparsers(dest="action", required=True)


def _documented(commands: Any, name: str, *, output: argparse.ArgumentParser, help: str, module: str) -> Any:
    """A parser whose --help is `module`'s docstring."""
    return commands.add_parser(name, parents=[output], help=help, description=module_doc(module), formatter_class=RAW)


def _add_account(commands: Any, output: argparse.ArgumentParser, handler: Handler) -> None:
    actions = _group(commands, "account", help="show an account")
    show = _documented(
        actions,
        "show",
        output=output,
        help="balance, holds, limits and recent events of an account",
        module="streamwallet.account_show",
    )
    show.add_argument("account_id", metavar="ID")
    show.add_argument(
        "--events",
        type=_bounded(0, HISTORY_EVENTS_MAX),
        default=HISTORY_EVENTS_DEFAULT,
        help=f"how many recent events (0..{HISTORY_EVENTS_MAX}; {HISTORY_EVENTS_DEFAULT})",
    )
    show.add_argument("--min-seq", type=_bounded(0, None), default=0, help="wait until the view holds event N")
    show.add_argument("--no-holds", action="store_true", help="do not read the open holds from the changelog")
    show.set_defaults(handler=handler)


def _add_submit(commands: Any, output: argparse.ArgumentParser, handler: Handler) -> None:
    common = argparse.ArgumentParser(add_help=False, parents=[output])
    common.add_argument(
        "--timeout-s",
        type=float,
        default=None,
        help="how long to wait for the result (default: STREAMWALLET_GATEWAY_RESULT_TIMEOUT_MS)",
    )
    submit = commands.add_parser(
        "submit",
        parents=[common],
        help="submit one command and print its result",
        description=module_doc("streamwallet.submit")
        + "\n\nCommand types (streamwallet submit TYPE --help lists a type's fields):\n  "
        + ", ".join(command_types()),
        formatter_class=RAW,
    )
    submit.add_argument("--body", help="the command as JSON, as the HTTP gateway takes it; - reads it from stdin")
    types = submit.add_subparsers(dest="type", metavar="TYPE")
    for type_name in command_types():
        _add_command_type(types, common, type_name)
    submit.set_defaults(handler=handler, type=None)


def _add_command_type(types: Any, common: argparse.ArgumentParser, type_name: str) -> None:
    parser = types.add_parser(
        type_name, parents=[common], help=f"submit a {type_name}", description=f"Submit a {type_name}."
    )
    parser.add_argument("--command-id", help="the command's id (default: a new UUID)")
    for field in command_fields(type_name):
        option = "--" + field.name.replace("_", "-")
        if field.kind is FieldKind.MONEY:
            amounts = parser.add_mutually_exclusive_group(required=field.required)
            amounts.add_argument(option, help="a decimal in the currency (--currency), e.g. 12.34")
            amounts.add_argument(f"{option}-minor", type=int, help="the same in integer minor units (1234)")
        elif field.kind is FieldKind.METADATA:
            parser.add_argument(option, action="append", metavar="KEY=VALUE", help="repeat for several entries")
        elif field.kind is FieldKind.LEGS:
            parser.add_argument(
                "--leg",
                dest="legs",
                action="append",
                required=True,
                metavar="ACCOUNT:AMOUNT:CURRENCY",
                help="one leg (amount signed: negative debits), repeated for each",
            )
        elif field.kind is FieldKind.BOOLEAN:
            parser.add_argument(option, type=_boolean(field.name), required=field.required, metavar="true|false")
        else:
            kind = int if field.kind is FieldKind.INTEGER else str
            parser.add_argument(option, type=kind, required=field.required)
    if "currency" not in {field.name for field in command_fields(type_name)} and any(
        field.kind is FieldKind.MONEY for field in command_fields(type_name)
    ):
        parser.add_argument("--currency", help="the currency a decimal amount is written in")


def _boolean(name: str) -> Callable[[str], bool]:
    def parse(text: str) -> bool:
        try:
            return boolean(text, name)
        except InputError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _add_load(commands: Any, output: argparse.ArgumentParser, handler: Handler) -> None:
    load = _documented(
        commands,
        "load",
        output=output,
        help="submit the commands of a CSV or JSON Lines file",
        module="streamwallet.load",
    )
    load.add_argument("file", type=Path, metavar="FILE")
    load.add_argument("--format", choices=["csv", "jsonl"], help="when the file's name does not say")
    load.add_argument("--results", type=Path, metavar="OUT.jsonl", help="write each line's outcome here")
    load.add_argument("--dedup-prefix", help="derive dedup ids as PREFIX:LINE instead of FILENAME:LINE")
    load.add_argument(
        "--window",
        type=_bounded(1, LOAD_WINDOW_MAX),
        default=LOAD_WINDOW_DEFAULT,
        help=f"commands in flight at most (1..{LOAD_WINDOW_MAX}; {LOAD_WINDOW_DEFAULT})",
    )
    load.add_argument(
        "--timeout-s",
        type=float,
        default=LOAD_RESULT_TIMEOUT_S_DEFAULT,
        help=f"how long each command's result may take ({LOAD_RESULT_TIMEOUT_S_DEFAULT:g})",
    )
    load.set_defaults(handler=handler)


def _add_tail(commands: Any, output: argparse.ArgumentParser, handler: Handler) -> None:
    tail = _documented(commands, "tail", output=output, help="follow a topic, decoded", module="streamwallet.tail")
    tail.add_argument("topic", choices=["events", "results", "deadletter", "commands"])
    tail.add_argument("--from-beginning", action="store_true", help="start at the topic's first message")
    tail.add_argument("--account", metavar="ID", help="only messages about this account")
    tail.add_argument("--no-follow", action="store_true", help="stop at the end the topic had at the start")
    tail.add_argument("--max", type=_bounded(1, None), metavar="N", help="stop after N messages")
    tail.set_defaults(handler=handler)


def _add_deadletter(commands: Any, output: argparse.ArgumentParser, handler: Handler) -> None:
    actions = _group(commands, "deadletter", help="re-drive dead letters")
    redrive = _documented(
        actions,
        "redrive",
        output=output,
        help="send dead letters back to their topic after a fix, each once",
        module="streamwallet.redrive",
    )
    redrive.add_argument(
        "--reason", action="append", metavar="CODE", help="only letters with this reason code (repeatable)"
    )
    redrive.add_argument("--dry-run", action="store_true", help="list what would be re-driven; send nothing")
    redrive.add_argument("--include-legs", action="store_true", help="re-drive internal legs too (read --help first)")
    redrive.add_argument("--again", action="store_true", help="re-drive letters of copies that failed again too")
    redrive.set_defaults(handler=handler)


def _add_flows(commands: Any, output: argparse.ArgumentParser, handler: Handler) -> None:
    actions = _group(commands, "flows", help="flows across partitions")
    summary = "the unfinished transfers, batches and prepared legs, from the changelog"
    in_flight = _documented(actions, "in-flight", output=output, help=summary, module="streamwallet.flows_in_flight")
    in_flight.add_argument("--partition", type=_bounded(0, None), metavar="N", help="only this changelog partition")
    in_flight.set_defaults(handler=handler)


def _bounded(low: int, high: int | None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is not within {low}..{'' if high is None else high}")
        return value

    return parse
