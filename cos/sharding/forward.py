"""Forwarding a call to the host that owns the entity's shard, over gRPC."""

from __future__ import annotations

import grpc

from chief_of_state.v1 import service_pb2, service_pb2_grpc
from cos.errors import HandlerCallError, UnavailableError

# Set on forwarded calls: the receiver serves them locally or says UNAVAILABLE,
# never forwards again, so a stale routing table cannot make a loop.
FORWARDED = "x-cos-forwarded"
# Trailer of an UNAVAILABLE that means "this host does not own the shard": the
# command was not run, so the forwarder may safely try the next owner.
NOT_OWNER = "x-cos-not-owner"
# Headers that belong to the hop, not to the command.
_HOP_HEADERS = {"user-agent", "grpc-accept-encoding", "grpc-timeout", FORWARDED}


class PeerClients:
    """One aio channel per peer host address."""

    def __init__(self) -> None:
        self._stubs: dict[str, service_pb2_grpc.ChiefOfStateServiceStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def _stub(self, address: str) -> service_pb2_grpc.ChiefOfStateServiceStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address)
            self._channels.append(channel)
            stub = self._stubs[address] = service_pb2_grpc.ChiefOfStateServiceStub(channel)
        return stub

    async def process_command(
        self,
        address: str,
        request: service_pb2.ProcessCommandRequest,
        metadata: list[tuple[str, str | bytes]],
        timeout: float,
    ) -> service_pb2.ProcessCommandResponse:
        """ProcessCommand on the owner; its errors come back as the same status."""
        try:
            reply: service_pb2.ProcessCommandResponse = await self._stub(address).ProcessCommand(
                request, metadata=_hop(metadata), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _translate(address, exc) from None
        return reply

    async def get_state(
        self, address: str, request: service_pb2.GetStateRequest, timeout: float
    ) -> service_pb2.GetStateResponse:
        """GetState on the owner."""
        try:
            reply: service_pb2.GetStateResponse = await self._stub(address).GetState(
                request, metadata=_hop([]), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _translate(address, exc) from None
        return reply

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._stubs.clear()


def _hop(metadata: list[tuple[str, str | bytes]]) -> tuple[tuple[str, str | bytes], ...]:
    kept = [(k, v) for k, v in metadata if k not in _HOP_HEADERS and not k.startswith(":")]
    return (*kept, (FORWARDED, "1"))


class OwnerMovedError(UnavailableError):
    """The peer did not run the command (not its shard, or unreachable): try again."""


def _translate(address: str, exc: grpc.aio.AioRpcError) -> Exception:
    trailing = exc.trailing_metadata() or ()
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        details = exc.details() or ""
        # Retry only when the command surely did not run there: an explicit
        # "not owner", or no connection at all. Any other UNAVAILABLE passes on.
        if any(k == NOT_OWNER for k, _ in trailing) or "failed to connect" in details:
            return OwnerMovedError(f"host at {address} does not serve the shard: {details}")
    trailers = tuple((k, v) for k, v in trailing if k == "grpc-status-details-bin")
    return HandlerCallError(exc.code(), exc.details() or "", trailers)
