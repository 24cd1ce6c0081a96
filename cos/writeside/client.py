"""Client of the application's ``WriteSideHandlerService``: one shared aio channel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from chief_of_state.v1 import common_pb2, writeside_pb2, writeside_pb2_grpc
from cos.errors import HandlerCallError
from cos.settings import CosSettings

Metadata = Sequence[tuple[str, str | bytes]]

# Rich error details a handler attaches travel in this trailer; pass it on as is.
_DETAILS_KEY = "grpc-status-details-bin"
_MAX_MESSAGE = 64 * 1024 * 1024


class WriteHandlerClient:
    """Calls ``HandleCommand`` / ``HandleEvent`` with the configured deadline, TLS and headers."""

    def __init__(self, settings: CosSettings) -> None:
        self._target = f"{settings.write_side_host}:{settings.write_side_port}"
        self._timeout = settings.command_handler_timeout
        self._tls = settings.write_side_use_tls
        self._ca_file = settings.write_side_tls_ca_file
        self._channel: grpc.aio.Channel | None = None
        self._stub: writeside_pb2_grpc.WriteSideHandlerServiceStub | None = None

    def _open(self) -> writeside_pb2_grpc.WriteSideHandlerServiceStub:
        # Created lazily so the channel binds to the event loop that uses it.
        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.keepalive_time_ms", 30_000),
        ]
        if self._tls:
            roots = Path(self._ca_file).read_bytes() if self._ca_file else None
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self._channel = grpc.aio.secure_channel(self._target, credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(self._target, options=options)
        self._stub = writeside_pb2_grpc.WriteSideHandlerServiceStub(self._channel)
        return self._stub

    async def handle_command(
        self,
        command: any_pb2.Any,
        prior_state: any_pb2.Any,
        prior_meta: common_pb2.MetaData,
        metadata: Metadata,
    ) -> writeside_pb2.HandleCommandResponse:
        """Ask the handler which events ``command`` produces."""
        request = writeside_pb2.HandleCommandRequest(
            command=command, prior_state=prior_state, prior_event_meta=prior_meta
        )
        reply: writeside_pb2.HandleCommandResponse = await self._call(
            "HandleCommand", request, metadata
        )
        return reply

    async def handle_event(
        self,
        event: any_pb2.Any,
        prior_state: any_pb2.Any,
        meta: common_pb2.MetaData,
        metadata: Metadata,
    ) -> writeside_pb2.HandleEventResponse:
        """Ask the handler for the state ``event`` produces."""
        request = writeside_pb2.HandleEventRequest(
            event=event, prior_state=prior_state, event_meta=meta
        )
        reply: writeside_pb2.HandleEventResponse = await self._call(
            "HandleEvent", request, metadata
        )
        return reply

    async def _call(self, method: str, request: Message, metadata: Metadata) -> Any:
        stub = self._stub or self._open()
        try:
            return await getattr(stub, method)(
                request, timeout=self._timeout, metadata=tuple(metadata) or None
            )
        except grpc.aio.AioRpcError as exc:
            raise self._translate(method, exc) from None

    def _translate(self, method: str, exc: grpc.aio.AioRpcError) -> HandlerCallError:
        trailers = tuple(
            (key, value) for key, value in (exc.trailing_metadata() or ()) if key == _DETAILS_KEY
        )
        code = exc.code()
        message = exc.details() or ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and not trailers:
            message = (
                f"write handler at {self._target} did not answer {method} "
                f"within {int(self._timeout * 1000)} ms"
            )
        elif code == grpc.StatusCode.UNAVAILABLE and not trailers:
            message = f"write handler at {self._target} is unavailable ({method}): {message}"
        return HandlerCallError(code, message, trailers)

    async def close(self) -> None:
        """Close the channel."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None
