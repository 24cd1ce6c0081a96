"""A read handler that records how late each event reaches it.

For every ``HandleReadSide`` call it appends one line to ``--out``:
``<received unix time> <lag ms> <entity id> <revision>``, where the lag is the
time of receipt minus the event's ``revision_date``. ``revision_date`` is set
just before the runtime writes the event, so the lag is a slight overestimate of
commit-to-delivery time (it includes the HandleEvent call and the journal write).

Run: ``python bench/lag_reader.py --port P --out FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from chief_of_state.v1 import readside_pb2, readside_pb2_grpc
from tests.handlers.serving import serve_until_signalled

READY = "lag reader listening on"


class LagReader(readside_pb2_grpc.ReadSideHandlerServiceServicer):
    """Answers ``successful=true`` and writes one line per event."""

    def __init__(self, out: Path) -> None:
        self._file = out.open("a", buffering=1)

    async def HandleReadSide(
        self, request: readside_pb2.HandleReadSideRequest, context: grpc.aio.ServicerContext
    ) -> readside_pb2.HandleReadSideResponse:
        now = time.time()
        written = request.meta.revision_date.ToNanoseconds() / 1e9
        self._file.write(
            f"{now:.6f} {(now - written) * 1000:.3f} {request.meta.entity_id} "
            f"{request.meta.revision_number}\n"
        )
        return readside_pb2.HandleReadSideResponse(successful=True)


async def serve(port: int, out: Path) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = grpc.aio.server()
    readside_pb2_grpc.add_ReadSideHandlerServiceServicer_to_server(LagReader(out), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await serve_until_signalled(server, f"{READY} 127.0.0.1:{port}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.out))
