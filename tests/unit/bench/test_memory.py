"""bench.memory samples every checkpoint, whatever its size against the chunk's."""

from __future__ import annotations

import pytest

from bench.memory import CHUNK, chunk_end


@pytest.mark.parametrize("checkpoint", [CHUNK // 3, 50_000, 100_000, CHUNK])
def test_every_checkpoint_ends_a_chunk(checkpoint: int) -> None:
    total = 7 * checkpoint + 11
    ends = []
    opened = 0
    while opened < total:
        end = chunk_end(opened, total=total, checkpoint=checkpoint)
        assert opened < end <= opened + CHUNK
        ends.append(end)
        opened = end
    assert ends[-1] == total
    assert {checkpoint * k for k in range(1, 8)} <= set(ends), "a checkpoint fell inside a chunk"
