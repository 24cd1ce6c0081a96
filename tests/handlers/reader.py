"""A read handler for tests, run in its own process: ``python tests/handlers/reader.py``.

Every call is appended to ``--log`` as one JSON line: ``{"kind": "attempt"|"delivered",
"read_side_id", "entity_id", "revision", "total", "poison", "headers"}`` (``headers``: the
``x-cos-*`` request headers and ``traceparent``). Failure modes:

- ``--fail-every N``: every N-th call raises UNAVAILABLE;
- events marked ``poison`` (see writer.py) answer ``successful=false`` until the file
  ``--log`` + ``.healed`` exists.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

import grpc
from google.protobuf import struct_pb2

from chief_of_state.v1 import readside_pb2, readside_pb2_grpc
from tests.handlers.serving import serve_until_signalled


class TestReadHandler(readside_pb2_grpc.ReadSideHandlerServiceServicer):
    def __init__(self, log: str, fail_every: int) -> None:
        self._fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._healed = log + ".healed"
        self._fail_every = fail_every
        self._calls = 0

    def _record(
        self, kind: str, request, context, event: struct_pb2.Struct, state: struct_pb2.Struct
    ) -> None:
        line = {
            "kind": kind,
            "read_side_id": request.read_side_id,
            "entity_id": request.meta.entity_id,
            "revision": request.meta.revision_number,
            "total": state.fields["total"].number_value,
            "poison": event.fields["poison"].bool_value,
            "headers": {
                k: v
                for k, v in (context.invocation_metadata() or ())
                if k.startswith("x-cos-") or k == "traceparent"
            },
        }
        os.write(self._fd, (json.dumps(line) + "\n").encode())

    async def HandleReadSide(self, request, context):
        self._calls += 1
        event, state = struct_pb2.Struct(), struct_pb2.Struct()
        request.event.Unpack(event)
        request.state.Unpack(state)
        self._record("attempt", request, context, event, state)
        if self._fail_every and self._calls % self._fail_every == 0:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"call {self._calls} fails on purpose")
        if event.fields["poison"].bool_value and not os.path.exists(self._healed):
            return readside_pb2.HandleReadSideResponse(successful=False)
        self._record("delivered", request, context, event, state)
        return readside_pb2.HandleReadSideResponse(successful=True)


async def serve(port: int, log: str, fail_every: int) -> None:
    server = grpc.aio.server()
    readside_pb2_grpc.add_ReadSideHandlerServiceServicer_to_server(
        TestReadHandler(log, fail_every), server
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await serve_until_signalled(server, f"test read handler listening on 127.0.0.1:{bound}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--fail-every", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.log, args.fail_every))
