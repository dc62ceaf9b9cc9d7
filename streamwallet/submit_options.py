"""`streamwallet submit TYPE --field value ...`: the options of a command type's parser
(operator_parsers.py) as the JSON body the gateway's translation takes."""

from __future__ import annotations

import argparse
from typing import Any

from streamwallet.command_input import (
    FieldKind,
    InputError,
    command_fields,
    leg_from_text,
    metadata_from_pairs,
)
from streamwallet.exit_codes import CommandError


def body_from_options(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"type": args.type}
    if args.command_id is not None:
        body["command_id"] = args.command_id
    try:
        for field in command_fields(args.type):
            if field.kind is FieldKind.MONEY:
                _money(body, args, field.name)
            elif field.kind is FieldKind.METADATA:
                if args.metadata:
                    body["metadata"] = metadata_from_pairs(args.metadata)
            elif field.kind is FieldKind.LEGS:
                body["legs"] = [leg_from_text(text) for text in args.legs]
            elif getattr(args, field.name) is not None:
                body[field.name] = getattr(args, field.name)
    except InputError as error:
        raise CommandError(f"not a command: {error} (nothing was sent)") from None
    currency = getattr(args, "currency", None)
    if currency is not None:
        body["currency"] = currency
    return body


def _money(body: dict[str, Any], args: argparse.Namespace, name: str) -> None:
    decimal, minor = getattr(args, name), getattr(args, f"{name}_minor")
    if decimal is not None:
        body[name] = decimal
    elif minor is not None:
        body[f"{name}_minor"] = minor
