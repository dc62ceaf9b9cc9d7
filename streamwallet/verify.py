"""`streamwallet verify [--topic NAME]`: walk the events topic and check every account's
trail: gap-free sequences from 1, and the hash chain (ledger/chain.py: each event's hash is
SHA-256 of its content, and its previous_hash is the hash of the account's event before it,
the first one's 64 zeros).

It reads every committed event up to the topic's last stable offsets when it starts, with
read_committed, partition by partition in order (each account lives on one partition, in
order), never joining a consumer group or committing. Each break is named by its account,
sequence, partition and offset, with why: an altered event fails its own hash; a deleted or
reordered one breaks the sequence and the link of the event after it. Events written before
the chain existed (no hash) are counted, not checked. `--topic` verifies another topic of
events (a copy, a backup restored elsewhere); `--json` prints one JSON object.
Exit codes: 0 every chain holds, 1 a break (or an undecodable message), 2 Kafka or the topic
cannot be reached.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from codec import DecodeError
from foundation.offsets import last_stable_offsets
from foundation.schema_registry import codec_for
from foundation.settings import Settings
from ledger.chain import ChainBreak, ChainCheck
from ledger.events import AccountEvent
from sinks.reconcile import read_until
from streamwallet.exit_codes import CommandError, ExitCode
from streamwallet.kafka_access import require_topics
from streamwallet.output import print_json, table

BREAKS_SHOWN_MAX = 200  # rows of the printed table; the JSON and the count keep all


@dataclasses.dataclass(slots=True)
class Verification:
    topic: str
    ends: dict[int, int]
    check: ChainCheck
    undecodable: list[tuple[int, int, str]]  # partition, offset, why

    @property
    def ok(self) -> bool:
        return not self.check.breaks and not self.undecodable


def verify_topic(settings: Settings, topic: str) -> Verification:
    admin = require_topics(settings)
    described = admin.list_topics(topic, timeout=10).topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise CommandError(f"Kafka at {settings.bootstrap_servers} has no topic {topic}")
    ends = last_stable_offsets(admin, topic, sorted(described.partitions))
    codec = codec_for(settings)
    verification = Verification(topic=topic, ends=dict(ends), check=ChainCheck(), undecodable=[])

    def take(message: Any) -> None:
        partition, offset = message.partition(), message.offset()
        try:
            event = codec.decode(message.value() or b"", expected=(AccountEvent,))
        except DecodeError as error:
            verification.undecodable.append((partition, offset, str(error)))
            return
        verification.check.add(event, partition=partition, offset=offset)

    read_until(settings, topic, ends, take)
    return verification


def _break_json(found: ChainBreak) -> dict[str, Any]:
    return dataclasses.asdict(found)


def render(verification: Verification) -> str:
    check = verification.check
    lines = [
        f"verified {verification.topic} up to {verification.ends}: {check.events} events of {check.accounts} accounts"
        f" ({check.unchained} written before the hash chain, not checked)",
    ]
    if verification.ok:
        lines.append("every account's chain holds")
        return "\n".join(lines)
    lines.append(f"{len(check.breaks)} breaks, {len(verification.undecodable)} undecodable messages")
    rows = [["account", "sequence", "partition", "offset", "why"]]
    rows += [
        [found.account_id, str(found.sequence), str(found.partition), str(found.offset), found.reason]
        for found in check.breaks[:BREAKS_SHOWN_MAX]
    ]
    rows += [["?", "?", str(partition), str(offset), why] for partition, offset, why in verification.undecodable]
    lines.append(table(rows))
    return "\n".join(lines)


def verify_command(settings: Settings, *, topic: str | None, as_json: bool) -> int:
    verification = verify_topic(settings, topic or settings.topology().events.name)
    if as_json:
        print_json(
            {
                "topic": verification.topic,
                "ends": {str(partition): end for partition, end in verification.ends.items()},
                "events": verification.check.events,
                "accounts": verification.check.accounts,
                "unchained": verification.check.unchained,
                "breaks": [_break_json(found) for found in verification.check.breaks],
                "undecodable": [
                    {"partition": partition, "offset": offset, "reason": why}
                    for partition, offset, why in verification.undecodable
                ],
                "ok": verification.ok,
            }
        )
    else:
        print(render(verification))
    return int(ExitCode.OK if verification.ok else ExitCode.NO)
