"""The record of bulk submit on Kafka: many independent commands in one message.

A bundle is transport, not domain: each of its commands is the record it would be as a
message of its own (either framing), decided by the shard one at a time, with its own
dedup id, result and events. The bundle is decoded once; its commands are checked before
any of them is decided (codec/bundling.py), so a bundle is either refused as a whole (a
dead letter with a `BundleRefusalCode`, written in the same Kafka transaction as the
consumed offset, so once) or all of its commands are decided in the one transaction
that consumes it.
"""

from __future__ import annotations

import dataclasses
import enum

# Commands of one bundle (the schema's doc says so too): a transaction decides a whole
# bundle, and must commit within the transaction timeout.
BUNDLE_COMMANDS_MAX = 2048
BUNDLE_ID_LENGTH_MAX = 64  # characters


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommandBundle:
    bundle_id: str
    commands: list[bytes]


class BundleRefusalCode(enum.StrEnum):
    """Why a worker refused a whole bundle (`DeadLetter.reason_code`). None of its commands
    was decided; correct the bundle and send it again (the commands' dedup ids make a
    resend safe)."""

    INVALID_BUNDLE = "INVALID_BUNDLE"  # no commands, more than BUNDLE_COMMANDS_MAX, or a bad bundle id
    UNDECODABLE_COMMAND = "UNDECODABLE_COMMAND"  # a command that is not a command record (a bundle in a bundle too)
    MISROUTED_BUNDLE = "MISROUTED_BUNDLE"  # a command whose routing key belongs to another partition


@dataclasses.dataclass(frozen=True, slots=True)
class BundleRefusal:
    code: BundleRefusalCode
    reason: str

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"
