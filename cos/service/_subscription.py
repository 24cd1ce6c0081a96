"""``cos.v1.SubscriptionService``: Subscribe and SubscribeAll, streamed from the journal
by the node's :class:`cos.subscription.SubscriptionHub`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from cos.service._status import abort_with
from cos.sharding import shard_of
from cos.subscription import Subscription, SubscriptionHub, check_cursor
from cos.v1 import subscription_pb2, subscription_pb2_grpc
from cos.writeside import check_entity_id

# Chief of State's words, so its clients' checks match.
NOT_ENABLED = "Subscription is not enabled; configure subscription to use streaming"

Event = subscription_pb2.SubscriptionEvent


class SubscriptionServicer(subscription_pb2_grpc.SubscriptionServiceServicer):
    """Checks the request, starts the subscription and turns journal rows into messages,
    each with the cursor to resume after it; ``hub`` is None when subscriptions are off."""

    def __init__(self, hub: SubscriptionHub | None, *, num_shards: int) -> None:
        self._hub = hub
        self._num_shards = num_shards

    async def Subscribe(
        self, request: subscription_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Event]:
        hub = await self._enabled(context)
        try:
            check_entity_id(request.entity_id)
            subscription = await self._one(hub, request)
        except Exception as exc:
            await abort_with(context, exc, "Subscribe")
        async for message in self._messages(hub, subscription, context, "Subscribe"):
            yield message

    async def SubscribeAll(
        self, request: subscription_pb2.SubscribeAllRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Event]:
        hub = await self._enabled(context)
        shards = range(self._num_shards)
        try:
            positions = await self._start(hub, request.WhichOneof("start"), request.after, shards)
        except Exception as exc:
            await abort_with(context, exc, "SubscribeAll")
        async for message in self._messages(hub, Subscription(positions), context, "SubscribeAll"):
            yield message

    async def _enabled(self, context: grpc.aio.ServicerContext) -> SubscriptionHub:
        if self._hub is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_ENABLED)
            raise AssertionError("unreachable")  # context.abort raises
        return self._hub

    async def _one(
        self, hub: SubscriptionHub, request: subscription_pb2.SubscribeRequest
    ) -> Subscription:
        shard = shard_of(request.entity_id, self._num_shards)
        start = request.WhichOneof("start")
        if start == "after_revision":
            return Subscription({shard: 0}, request.entity_id, request.after_revision)
        positions = await self._start(hub, start, request.after, [shard])
        return Subscription(positions, request.entity_id)

    async def _start(
        self,
        hub: SubscriptionHub,
        start: str | None,
        cursor: subscription_pb2.Cursor,
        shards: Sequence[int],
    ) -> dict[int, int]:
        if start == "from_now":
            return await hub.last_positions(shards)
        if start == "after":
            pairs = [(p.shard, p.position) for p in cursor.positions]
            return check_cursor(pairs, cursor.shard_count, self._num_shards, shards)
        return dict.fromkeys(shards, 0)  # from the beginning

    async def _messages(
        self,
        hub: SubscriptionHub,
        subscription: Subscription,
        context: grpc.aio.ServicerContext,
        method: str,
    ) -> AsyncIterator[Event]:
        # One cursor per stream, updated in place: building it anew for each message
        # cost about 40 µs of 16 shards.
        cursor = subscription_pb2.Cursor(shard_count=self._num_shards)
        index = {}
        for shard in subscription.shards:
            index[shard] = len(cursor.positions)
            cursor.positions.add(shard=shard, position=subscription.positions[shard])
        # The headers tell the client its start is fixed: "from now" means from here.
        await context.send_initial_metadata(())
        try:
            async for stored in hub.stream(subscription):
                cursor.positions[index[stored.shard]].position = stored.position
                # EventWrapper's event, resulting_state and meta have the same numbers.
                message = Event.FromString(stored.payload)
                message.shard = stored.shard
                message.position = stored.position
                message.cursor.CopyFrom(cursor)
                yield message
        except Exception as exc:
            await abort_with(context, exc, method)
