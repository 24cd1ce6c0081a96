"""Forwarding a call to the host that owns the entity's shard, over gRPC."""

from __future__ import annotations

import logging
import time

import grpc

from chief_of_state.v1 import service_pb2, service_pb2_grpc
from cos.sharding._host import Route
from cos.status import call_error
from cos.tls import TlsFileError, TlsFiles, channel_credentials
from cos.transport import DEFAULT_GRPC, FORWARDED, GrpcSettings, Metadata, open_channel
from cos.writeside import CommandRequest, EntityState, StateRequest

log = logging.getLogger(__name__)

_TLS_CHECK_SECONDS = 1.0
# Headers that belong to the hop, not to the command.
_HOP_HEADERS = {"user-agent", "grpc-accept-encoding", "grpc-timeout", FORWARDED}


class PeerClients:
    """One aio channel per peer host address (:class:`cos.sharding.host.Peers`), over
    TLS when the node has ``tls`` files; channels opened after the files change use
    the new ones (the old channels finish their calls)."""

    def __init__(
        self,
        grpc_settings: GrpcSettings = DEFAULT_GRPC,
        tls: TlsFiles | None = None,
    ) -> None:
        self._grpc = grpc_settings
        self._tls = tls
        self._tls_version = tls.version() if tls else ()
        self._credentials = channel_credentials(tls) if tls else None
        self._next_tls_check = 0.0
        self._stubs: dict[str, service_pb2_grpc.ChiefOfStateServiceStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def _reload_tls(self, tls: TlsFiles) -> None:
        """New credentials, and new channels from now on, when the files changed (looked
        at once a second at most)."""
        self._next_tls_check = time.monotonic() + _TLS_CHECK_SECONDS
        version = tls.version()
        if version == self._tls_version:
            return
        try:
            self._credentials = channel_credentials(tls)
        except TlsFileError as exc:
            log.warning("TLS files changed but cannot be used yet (%s): keeping the old ones", exc)
            return
        self._tls_version = version
        self._stubs.clear()

    def _stub(self, address: str) -> service_pb2_grpc.ChiefOfStateServiceStub:
        if self._tls is not None and time.monotonic() >= self._next_tls_check:
            self._reload_tls(self._tls)
        stub = self._stubs.get(address)
        if stub is None:
            channel = open_channel(
                address,
                credentials=self._credentials,
                server_name=self._tls.server_name if self._tls else None,
                settings=self._grpc,
            )
            self._channels.append(channel)
            stub = self._stubs[address] = service_pb2_grpc.ChiefOfStateServiceStub(channel)
        return stub

    async def forward_command(
        self, route: Route, request: CommandRequest, timeout: float
    ) -> EntityState:
        """ProcessCommand on the owner; its errors come back as the same status."""
        message = service_pb2.ProcessCommandRequest(
            entity_id=request.entity_id, command=request.command
        )
        return await self._forward("ProcessCommand", route, message, request.metadata, timeout)

    async def forward_state(
        self, route: Route, request: StateRequest, timeout: float
    ) -> EntityState:
        """GetState on the owner."""
        message = service_pb2.GetStateRequest(entity_id=request.entity_id)
        return await self._forward("GetState", route, message, request.metadata, timeout)

    async def _forward(
        self,
        method: str,
        route: Route,
        message: service_pb2.ProcessCommandRequest | service_pb2.GetStateRequest,
        metadata: Metadata,
        timeout: float,
    ) -> EntityState:
        call = getattr(self._stub(route.address), method)
        try:
            reply = await call(message, metadata=_hop(metadata), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise call_error(exc, f"host at {route.address}", host=True) from None
        return EntityState(reply.state, reply.meta)

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._stubs.clear()


def _hop(metadata: Metadata) -> tuple[tuple[str, str | bytes], ...]:
    kept = [(k, v) for k, v in metadata if k not in _HOP_HEADERS and not k.startswith(":")]
    return (*kept, (FORWARDED, "1"))
