"""Helpers of the subscription tests: a stub on a runtime's channel and reading streams."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

from cos.v1 import subscription_pb2, subscription_pb2_grpc

Event = subscription_pb2.SubscriptionEvent
Key = tuple[str, int]  # (entity id, revision): one event, wherever it is read


def stub_on(channel: grpc.aio.Channel) -> subscription_pb2_grpc.SubscriptionServiceStub:
    return subscription_pb2_grpc.SubscriptionServiceStub(channel)


async def read(call: Any, count: int) -> list[Event]:
    """The next ``count`` messages of a stream (fails if it ends before)."""
    got = []
    for _ in range(count):
        message = await call.read()
        assert message is not grpc.aio.EOF, f"the stream ended after {len(got)} of {count}"
        got.append(message)
    return got


def keys(events: Iterable[Event]) -> list[Key]:
    return [(e.meta.entity_id, e.meta.revision_number) for e in events]


def check_order(events: Iterable[Event]) -> None:
    """Positions grow by shard, revisions by entity (gap-free for each entity)."""
    positions: dict[int, int] = {}
    revisions: dict[str, int] = {}
    for event in events:
        assert event.position > positions.get(event.shard, 0), event
        positions[event.shard] = event.position
        entity, revision = event.meta.entity_id, event.meta.revision_number
        assert revision == revisions.get(entity, 0) + 1, (entity, revision)
        revisions[entity] = revision
