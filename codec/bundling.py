"""Packing commands into a `CommandBundle` and unpacking one, with the checks a worker
makes before it decides any command of a bundle (codec/bundle.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from codec.avro import Codec, DecodeError
from codec.bundle import BUNDLE_COMMANDS_MAX, BUNDLE_ID_LENGTH_MAX, BundleRefusal, BundleRefusalCode, CommandBundle
from ledger.commands import COMMAND_TYPES, Command


def bundle_of(codec: Codec, bundle_id: str, commands: Sequence[Command]) -> CommandBundle:
    """The bundle of `commands`, each encoded as it would be alone."""
    encode = codec.encode
    return CommandBundle(bundle_id=bundle_id, commands=[encode(command) for command in commands])


def unbundle(codec: Codec, bundle: CommandBundle, *, is_local: Callable[[str], bool]) -> list[Any] | BundleRefusal:
    """The commands of a bundle, in order, or why the bundle is refused as a whole.
    `is_local` says whether a routing key belongs to the partition the bundle arrived on."""
    count = len(bundle.commands)
    if not 0 < count <= BUNDLE_COMMANDS_MAX:
        return BundleRefusal(
            BundleRefusalCode.INVALID_BUNDLE, f"a bundle carries 1..{BUNDLE_COMMANDS_MAX} commands, this one {count}"
        )
    if not 0 < len(bundle.bundle_id) <= BUNDLE_ID_LENGTH_MAX:
        return BundleRefusal(BundleRefusalCode.INVALID_BUNDLE, f"a bundle id has 1..{BUNDLE_ID_LENGTH_MAX} characters")
    decode = codec.decode
    decoded: list[Any] = []
    for index, data in enumerate(bundle.commands):
        try:
            command = decode(data, expected=COMMAND_TYPES)
        except DecodeError as error:
            return BundleRefusal(BundleRefusalCode.UNDECODABLE_COMMAND, f"command {index}: {error}")
        if not is_local(command.routing_key):
            return BundleRefusal(
                BundleRefusalCode.MISROUTED_BUNDLE,
                f"command {index} ({type(command).__name__} {command.command_id!r}) routes to "
                f"{command.routing_key!r}, which is not on the bundle's partition: bundle only commands of one "
                "partition (Kafka's murmur2 of their routing keys)",
            )
        decoded.append(command)
    return decoded


def by_partition(commands: Sequence[Command], *, partition_of: Callable[[str], int], size: int) -> list[list[Command]]:
    """Commands grouped into bundles of at most `size`, each of one partition (by
    `partition_of` of the routing key), in the order of their first command; within a
    partition the commands keep their order."""
    if not 0 < size <= BUNDLE_COMMANDS_MAX:
        raise ValueError(f"a bundle carries 1..{BUNDLE_COMMANDS_MAX} commands, not {size}")
    open_bundles: dict[int, list[Command]] = {}
    bundles: list[list[Command]] = []
    for command in commands:
        partition = partition_of(command.routing_key)
        bundle = open_bundles.get(partition)
        if bundle is None or len(bundle) >= size:
            bundle = open_bundles[partition] = []
            bundles.append(bundle)
        bundle.append(command)
    return bundles
