"""Client of an application's ``ReadSideHandlerService``: one aio channel per read side."""

from __future__ import annotations

import grpc

from chief_of_state.v1 import persistence_pb2, readside_pb2, readside_pb2_grpc
from cos.readside.config import ReadSideConfig


class ReadHandlerClient:
    """Calls ``HandleReadSide`` with the read side's deadline; TLS when configured."""

    def __init__(self, config: ReadSideConfig) -> None:
        self.read_side_id = config.read_side_id
        self._target = f"{config.host}:{config.port}"
        self._timeout = config.timeout_ms / 1000
        self._tls = config.use_tls
        self._channel: grpc.aio.Channel | None = None
        self._stub: readside_pb2_grpc.ReadSideHandlerServiceStub | None = None

    def _open(self) -> readside_pb2_grpc.ReadSideHandlerServiceStub:
        if self._tls:
            credentials = grpc.ssl_channel_credentials()
            self._channel = grpc.aio.secure_channel(self._target, credentials)
        else:
            self._channel = grpc.aio.insecure_channel(self._target)
        self._stub = readside_pb2_grpc.ReadSideHandlerServiceStub(self._channel)
        return self._stub

    async def deliver(self, event: persistence_pb2.EventWrapper) -> str | None:
        """Hand one event to the read handler; None on success, else why it failed."""
        stub = self._stub or self._open()
        request = readside_pb2.HandleReadSideRequest(
            event=event.event,
            state=event.resulting_state,
            meta=event.meta,
            read_side_id=self.read_side_id,
        )
        try:
            reply = await stub.HandleReadSide(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return None if reply.successful else "handler answered successful=false"

    async def close(self) -> None:
        """Close the channel."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None
