"""Where a shard is in its input, recorded in its own changelog.

Every transaction that consumes from a partition writes, besides the shard's state
changes, one record that says the next offset of the partition's commands and legs. It
commits atomically with the state change and with the group's offsets, so after a
restore the shard knows exactly which input its state includes:

* a new owner starts consuming there (the group's committed offsets must agree; if they
  are ahead, the state misses a committed batch and the worker refuses to decide);
* if the group's offsets are gone (expired while the group was empty, deleted by an
  operator), the partition resumes where its state is, instead of replaying commands
  older than the dedup window from the beginning of the topic.

Key: `~positions` (outside the ledger's table letters, so readers of the ledger's
tables skip it). Value: `<commands next offset>,<legs next offset>`, -1 for "none yet".
"""

from __future__ import annotations

import dataclasses

POSITIONS_KEY = b"~positions"
NONE = -1


@dataclasses.dataclass(frozen=True, slots=True)
class InputPositions:
    commands: int = NONE  # the next offset to consume
    legs: int = NONE

    def encode(self) -> bytes:
        return f"{self.commands},{self.legs}".encode()

    @classmethod
    def decode(cls, raw: bytes) -> InputPositions:
        commands, legs = raw.decode().split(",")
        return cls(commands=int(commands), legs=int(legs))

    def advanced(self, *, commands: int | None, legs: int | None) -> InputPositions:
        return InputPositions(
            commands=self.commands if commands is None else commands,
            legs=self.legs if legs is None else legs,
        )
