"""Which shard an entity belongs to: the Chief of State formula."""

from __future__ import annotations


def java_string_hashcode(value: str) -> int:
    """Java's ``String.hashCode()``: 31-based over UTF-16 code units, 32-bit signed."""
    h = 0
    encoded = value.encode("utf-16-be")
    for i in range(0, len(encoded), 2):
        h = (31 * h + ((encoded[i] << 8) | encoded[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def shard_of(entity_id: str, num_shards: int) -> int:
    """``abs(hashCode(entity_id)) % num_shards``, so shard numbers match Chief of State."""
    return abs(java_string_hashcode(entity_id)) % num_shards
