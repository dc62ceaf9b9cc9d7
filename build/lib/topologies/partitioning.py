"""Kafka's default partitioner (murmur2 of the key bytes), as the Java client, aiokafka
and Faust compute it. confluent-kafka producers must be configured with
`partitioner=murmur2_random` to agree (librdkafka's default is CRC32-based)."""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """32-bit murmur2 as in org.apache.kafka.common.utils.Utils.murmur2 (signed result)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    blocks = length // 4
    for index in range(blocks):
        i = index * 4
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = blocks * 4
    remaining = length & 3
    if remaining == 3:
        h ^= data[tail + 2] << 16
    if remaining >= 2:
        h ^= data[tail + 1] << 8
    if remaining >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a non-empty key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
