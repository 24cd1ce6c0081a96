from __future__ import annotations

import pytest

from cos.sharding import shard_of
from cos.sharding._routing import java_string_hashcode


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", 0),
        ("a", 97),
        ("hello", 99162322),
        ("polygenelubricants", -2147483648),  # Integer.MIN_VALUE
        ("\U0001f600", 1772899),  # a surrogate pair counts as two UTF-16 units
        ("é", 233),
    ],
)
def test_matches_java_string_hashcode(value: str, expected: int) -> None:
    assert java_string_hashcode(value) == expected


def test_shard_is_abs_hash_modulo_shards() -> None:
    assert shard_of("hello", 16) == 99162322 % 16
    assert shard_of("polygenelubricants", 10) == 2147483648 % 10
    negative = next(s for s in (f"id-{i}" for i in range(1000)) if java_string_hashcode(s) < 0)
    assert shard_of(negative, 7) == abs(java_string_hashcode(negative)) % 7


def test_shards_spread_over_every_number() -> None:
    seen = {shard_of(f"account-{i}", 16) for i in range(500)}
    assert seen == set(range(16))
