"""``cos.v1.HistoryService``: an entity's stored events and its past states."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from cos.history import HistoryReader
from cos.service._status import abort_with, answer
from cos.v1 import history_pb2, history_pb2_grpc


class HistoryServicer(history_pb2_grpc.HistoryServiceServicer):
    """Streams events from the journal and answers states at past revisions."""

    def __init__(self, reader: HistoryReader) -> None:
        self._reader = reader

    async def GetEvents(
        self, request: history_pb2.GetEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[history_pb2.GetEventsResponse]:
        events = self._reader.events(
            request.entity_id, request.from_revision, request.to_revision, request.limit
        )
        try:
            async for wrapper in events:
                yield history_pb2.GetEventsResponse(
                    event=wrapper.event, resulting_state=wrapper.resulting_state, meta=wrapper.meta
                )
        except Exception as exc:
            await abort_with(context, exc, "GetEvents")

    async def GetStateAt(
        self, request: history_pb2.GetStateAtRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.GetStateAtResponse:
        found = await answer(
            context, self._reader.state_at(request.entity_id, request.revision), "GetStateAt"
        )
        return history_pb2.GetStateAtResponse(state=found.state, meta=found.meta)
